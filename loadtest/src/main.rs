//! The `xuanfang-loadtest` binary.

use clap::Parser;
use xuanfang_loadtest::cli::{Cli, Cmd};
use xuanfang_loadtest::scenario::{self, Scenario};

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xuanfang-loadtest: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let (kind, args) = match cli.cmd {
        Cmd::Worker => {
            if let Err(e) = rt.block_on(xuanfang_loadtest::workers::run_worker()) {
                eprintln!("xuanfang-loadtest worker: {e}");
                std::process::exit(2);
            }
            // Do not wait for the blocking stdin reader: the result is out, we are done.
            std::process::exit(0);
        }
        Cmd::Floor(a) => {
            if let Err(e) = rt.block_on(xuanfang_loadtest::floor::main(a)) {
                eprintln!("xuanfang-loadtest floor: {e}");
                std::process::exit(2);
            }
            return;
        }
        Cmd::Stall(a) => {
            if let Err(e) = rt.block_on(xuanfang_loadtest::stall::main(a)) {
                eprintln!("xuanfang-loadtest stall: {e}");
                std::process::exit(2);
            }
            return;
        }
        Cmd::Watch(a) => (Scenario::Watch, a),
        Cmd::Select(a) => (Scenario::Select, a),
        Cmd::Storm(a) => (Scenario::Storm, a),
        Cmd::Mixed(a) => (Scenario::Mixed, a),
    };
    match rt.block_on(scenario::run(kind, args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("xuanfang-loadtest: {e}");
            std::process::exit(2);
        }
    }
}
