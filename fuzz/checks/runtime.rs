//! One Tokio runtime for the gateway checks (the handlers' helpers are async; the image
//! checks run on its blocking pool as in the server).

use std::sync::OnceLock;

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
    .block_on(f)
}
