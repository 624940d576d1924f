//! `--report-html FILE`: the run as one self-contained page (inline CSS and SVG, no
//! script, nothing fetched), in the manner of k6's exported dashboard: verdict and
//! audit first, then latency quantiles per second, deliveries per second and CPU over
//! time, then the tables. Labels are Simplified Chinese first, English second.
//!
//! The markup is well-formed XML (void elements self-closed, text escaped), so it can
//! be checked mechanically and opened by anything that reads XHTML too.

use std::fmt::Write as _;

use crate::metrics::name;
use crate::report::Report;
use crate::timeline::{CpuPoint, Quantiles, Timeline};

const CSS: &str = "
body{font-family:'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:2px 0;color:#c4c9d4;font-size:13px}
main{padding:18px 28px;max-width:1180px}
section{background:#fff;border-radius:6px;padding:14px 18px;margin:0 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:0 0 10px}
h2 small,th small{color:#6b7280;font-weight:normal}
.verdicts{display:flex;gap:12px;flex-wrap:wrap}
.badge{padding:10px 16px;border-radius:6px;font-weight:bold;font-size:15px}
.pass{background:#e3f6e8;color:#17692f}
.fail{background:#fde6e6;color:#9b1c1c}
.warn{background:#fff4d6;color:#7a5200;padding:10px 16px;border-radius:6px;margin-top:10px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.tile{background:#f7f8fa;border-radius:6px;padding:10px}
.tile b{display:block;font-size:20px}
.tile span{color:#6b7280;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:16px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{text-align:right;padding:4px 8px;border-bottom:1px solid #eceef2}
th:first-child,td:first-child{text-align:left}
td.l{text-align:left}
svg text{font-family:inherit}
";

/// Colours of the p50 / p95 / p99 (or first / second / third) series.
const COLOURS: [&str; 3] = ["#2f7ed8", "#f28f43", "#c42525"];

/// Escapes text for an element's content or an attribute.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A UTC date and time from Unix seconds (civil-from-days, no time-zone data needed).
fn utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One series of a chart.
struct Series<'a> {
    label: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart in SVG: x in seconds of the run over `(x0, x1)` (the same for every chart
/// of a page, so they line up in time), y from 0 to a round maximum.
fn chart(title: &str, unit: &str, series: &[Series<'_>], (x0, x1): (f64, f64)) -> String {
    const W: f64 = 540.0;
    const H: f64 = 230.0;
    const L: f64 = 52.0;
    const R: f64 = 12.0;
    const T: f64 = 42.0;
    const B: f64 = 34.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<text x="{L}" y="16" font-size="13" font-weight="bold" fill="#1d2330">{}</text>"##,
        esc(title)
    );
    let x1 = x1.max(x0 + 1.0);
    let series: Vec<Series<'_>> = series
        .iter()
        .map(|se| Series {
            label: se.label,
            points: se
                .points
                .iter()
                .copied()
                .filter(|(x, _)| (x0..=x1).contains(x))
                .collect(),
        })
        .collect();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|x| x.points.iter().copied())
        .collect();
    if all.is_empty() {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="13" fill="#6b7280" text-anchor="middle">无数据 · no data</text></svg>"##,
            W / 2.0,
            H / 2.0
        );
        return s;
    }
    let ymax = nice_max(all.iter().map(|p| p.1).fold(0.0, f64::max));
    let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| H - B - y / ymax * (H - T - B);
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = py(v);
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e6eb"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#6b7280" text-anchor="end">{}</text>"##,
            W - R,
            L - 4.0,
            y + 3.0,
            num(v)
        );
    }
    let step = nice_max((x1 - x0) / 8.0).max(1.0);
    let mut x = (x0 / step).ceil() * step;
    while x <= x1 + 1e-9 {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#6b7280" text-anchor="middle">{}</text>"##,
            px(x),
            H - B + 14.0,
            num(x)
        );
        x += step;
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#6b7280" text-anchor="middle">秒 · seconds into the run</text><text x="12" y="{:.1}" font-size="10" fill="#6b7280" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"##,
        L + (W - L - R) / 2.0,
        H - 4.0,
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0,
        esc(unit)
    );
    let mut lx = L + 8.0;
    for (i, se) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if se.points.len() == 1 {
            let (x, y) = se.points[0];
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(x),
                py(y)
            );
        } else if !se.points.is_empty() {
            let pts: Vec<String> = se
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
                pts.join(" ")
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="10" height="3" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#1d2330">{}</text>"##,
            T - 15.0,
            lx + 13.0,
            T - 11.0,
            esc(se.label)
        );
        lx += 14.0 + 7.0 * se.label.chars().count() as f64 + 10.0;
    }
    s.push_str("</svg>");
    s
}

fn quantile_chart(tl: &Timeline, hist: &str, title: &str, xr: (f64, f64)) -> String {
    let q = |f: fn(&Quantiles) -> f64| tl.quantile(hist, f);
    chart(
        title,
        "毫秒 · ms",
        &[
            Series {
                label: "p50",
                points: q(|x| x.p50),
            },
            Series {
                label: "p95",
                points: q(|x| x.p95),
            },
            Series {
                label: "p99",
                points: q(|x| x.p99),
            },
        ],
        xr,
    )
}

fn cpu(points: &[CpuPoint]) -> Vec<(f64, f64)> {
    points.iter().map(|p| (p.t, p.percent_of_core)).collect()
}

fn tile(s: &mut String, value: &str, label: &str) {
    let _ = write!(
        s,
        r#"<div class="tile"><b>{}</b><span>{}</span></div>"#,
        esc(value),
        esc(label)
    );
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let empty = Timeline::default();
    let tl = r.timeline.as_ref().unwrap_or(&empty);
    // One time axis for every chart: from the first planned connect to the last second
    // with anything recorded (or the last CPU sample).
    let last_cpu = tl
        .tool_cpu
        .iter()
        .chain(&tl.server_cpu)
        .map(|p| p.t)
        .fold(0.0, f64::max);
    let xr = (0.0, (tl.seconds.len() as f64).max(last_cpu.ceil()));
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"/>");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>");
    let _ = write!(
        s,
        "<title>xuanfang-loadtest {} 压测报告 · load test report</title><style>{CSS}</style></head><body>",
        esc(&r.scenario)
    );
    let _ = write!(
        s,
        "<header><h1>xuanfang-loadtest 压测报告 · load test report: {}</h1><p>{} 个观看端 watchers · {} 户家庭 families · {} 个进程 worker(s) · {} · {}</p><p>开始 started {} · 时长 elapsed {:.1} s{}</p></header><main>",
        esc(&r.scenario),
        r.watchers,
        r.families,
        r.workers,
        esc(&r.encoding),
        esc(&r.urls.join(" ")),
        utc(tl.start_unix_s),
        r.elapsed_s,
        r.batch
            .as_ref()
            .map(|b| format!(" · 批次 batch {}", esc(b)))
            .unwrap_or_default()
    );

    // Verdicts.
    s.push_str("<section><h2>结论 <small>Verdict</small></h2><div class=\"verdicts\">");
    let badge = |s: &mut String, ok: bool, what: &str, yes: &str, no: &str| {
        let _ = write!(
            s,
            r#"<div class="badge {}">{} {}</div>"#,
            if ok { "pass" } else { "fail" },
            esc(what),
            if ok { yes } else { no }
        );
    };
    badge(
        &mut s,
        r.passed,
        "运行结果 · run:",
        "通过 PASS",
        "未通过 FAIL",
    );
    match &r.audit {
        Some(a) => badge(
            &mut s,
            a.passed,
            "一致性审计 · audit:",
            "通过 passed",
            "未通过 FAILED",
        ),
        None => s.push_str(r#"<div class="badge warn">一致性审计 · audit: 未运行 not run</div>"#),
    }
    s.push_str("</div>");
    if let Some(w) = r.tool_cpu.as_ref().and_then(crate::usage::ToolCpu::warning) {
        let _ = write!(
            s,
            r#"<div class="warn">⚠ 压测工具自身已饱和，客户端数据同时反映了工具本身 · {}</div>"#,
            esc(&w)
        );
    }
    s.push_str("</section>");

    // Headline numbers.
    s.push_str("<section><h2>概览 <small>Overview</small></h2><div class=\"tiles\">");
    let lat = |n: &str| r.latency_ms.get(n).cloned().unwrap_or_default();
    let b = lat(name::BROADCAST);
    let c = lat(name::CONFIRM);
    tile(
        &mut s,
        &format!("{}", r.counts.deliveries),
        "广播送达 · deliveries",
    );
    tile(
        &mut s,
        &format!("{:.0}/s", r.rates.deliveries_per_s),
        "每秒送达 · deliveries per second",
    );
    if b.count > 0 {
        tile(
            &mut s,
            &format!("{:.2} ms", b.p99),
            "广播延迟 p99 · broadcast p99",
        );
    }
    if c.count > 0 {
        tile(
            &mut s,
            &format!("{:.2} ms", c.p99),
            "确认延迟 p99 · confirm p99",
        );
    }
    tile(
        &mut s,
        &format!("{}", r.peak_open),
        "最多同时连接 · peak open connections",
    );
    if let Some(t) = &r.tool_cpu {
        tile(
            &mut s,
            &format!("{:.0}%", t.phase_percent_of_core),
            &format!(
                "工具 CPU（{}，{} 核）· tool CPU, % of a core",
                t.phase, t.cores
            ),
        );
    }
    if let Some(sc) = &r.server_cpu {
        tile(
            &mut s,
            &format!("{:.0}", sc.deliveries_per_cpu_s),
            "每 CPU 秒送达 · deliveries per server CPU-s",
        );
    }
    s.push_str("</div></section>");

    // Charts.
    s.push_str(
        "<section><h2>随时间变化 <small>Over time (per second)</small></h2><div class=\"charts\">",
    );
    s.push_str(&quantile_chart(
        tl,
        name::BROADCAST,
        "广播延迟 · broadcast latency (event → receipt)",
        xr,
    ));
    s.push_str(&quantile_chart(
        tl,
        name::CONFIRM,
        "确认延迟 · confirm latency (sent → answer)",
        xr,
    ));
    s.push_str(&chart(
        "每秒送达 · deliveries per second",
        "次/秒 · per s",
        &[Series {
            label: "送达 deliveries",
            points: tl.counts(name::BROADCAST),
        }],
        xr,
    ));
    let mut cpu_series = vec![Series {
        label: "工具 tool",
        points: cpu(&tl.tool_cpu),
    }];
    if !tl.server_cpu.is_empty() {
        cpu_series.push(Series {
            label: "服务端 server",
            points: cpu(&tl.server_cpu),
        });
    }
    s.push_str(&chart(
        "CPU 占用 · CPU use",
        "% 单核 · % of one core",
        &cpu_series,
        xr,
    ));
    if tl
        .seconds
        .iter()
        .any(|x| x.latency_ms.contains_key(name::CONNECT))
    {
        s.push_str(&quantile_chart(
            tl,
            name::CONNECT,
            "连接耗时 · connect (TCP + upgrade + welcome)",
            xr,
        ));
    }
    if tl
        .seconds
        .iter()
        .any(|x| x.latency_ms.contains_key(name::STORM))
    {
        s.push_str(&quantile_chart(
            tl,
            name::STORM,
            "重连风暴恢复 · storm: back at the hub's seq",
            xr,
        ));
    }
    s.push_str("</div></section>");

    // Latency table.
    s.push_str("<section><h2>延迟分布 <small>Latency (whole run, ms)</small></h2><table><thead><tr><th>指标 <small>metric</small></th><th>次数 <small>n</small></th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>最大 <small>max</small></th></tr></thead><tbody>");
    for (n, sm) in &r.latency_ms {
        if sm.count == 0 {
            continue;
        }
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(n),
            sm.count,
            sm.p50,
            sm.p90,
            sm.p95,
            sm.p99,
            sm.p999,
            sm.max
        );
    }
    s.push_str("</tbody></table></section>");

    // Audit checks.
    if let Some(a) = &r.audit {
        let _ = write!(
            s,
            "<section><h2>一致性审计 <small>Consistency audit: final seq {}, {} units taken</small></h2><table><tbody>",
            a.final_seq, a.taken
        );
        for ch in &a.checks {
            let _ = write!(
                s,
                r#"<tr><td class="l">{}</td><td class="l {}">{}</td><td class="l">{}</td></tr>"#,
                esc(&ch.name),
                if ch.passed { "pass" } else { "fail" },
                if ch.passed {
                    "✓ 通过"
                } else {
                    "✗ 未通过"
                },
                esc(&ch.detail)
            );
        }
        s.push_str("</tbody></table></section>");
    }

    // Thresholds.
    if !r.thresholds.is_empty() {
        s.push_str("<section><h2>阈值 <small>Thresholds</small></h2><table><tbody>");
        for t in &r.thresholds {
            let _ = write!(
                s,
                r#"<tr><td class="l">{}</td><td>{}</td><td class="l {}">{}</td></tr>"#,
                esc(&t.expr),
                t.value
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "未知 unknown".into()),
                if t.passed { "pass" } else { "fail" },
                if t.passed {
                    "✓ 通过"
                } else {
                    "✗ 未通过"
                }
            );
        }
        s.push_str("</tbody></table></section>");
    }

    // Counts and errors.
    s.push_str("<section><h2>计数 <small>Counts</small></h2><table><tbody>");
    let k = &r.counts;
    let rows: [(&str, u64); 12] = [
        ("连接成功 · connects ok", k.connects_ok),
        ("连接失败 · connects failed", k.connects_failed),
        ("断线 · disconnects", k.disconnects),
        ("重连 · reconnects", k.reconnects),
        ("收到消息 · messages in", k.messages_in),
        ("收到字节 · bytes in", k.bytes_in),
        ("发出消息 · messages out", k.messages_out),
        ("增量 · deltas", k.deltas),
        ("重新同步 · resyncs", k.resyncs),
        ("确认成功 · confirms ok", k.confirms_ok),
        ("抢房落空 · lost races", k.confirms_taken),
        ("自动确认 · automatic", k.auto_confirmed),
    ];
    for (label, v) in rows {
        let _ = write!(s, "<tr><td>{}</td><td>{v}</td></tr>", esc(label));
    }
    let _ = write!(
        s,
        "<tr><td>广播 · broadcasts (least reached)</td><td>{} ({})</td></tr>",
        r.broadcasts, r.broadcast_reach_min
    );
    s.push_str("</tbody></table>");
    if !r.errors.is_empty() {
        s.push_str("<h2 style=\"margin-top:14px\">错误 <small>Errors</small></h2><table><tbody>");
        for (e, n) in &r.errors {
            let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", esc(e));
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
    s.push_str("</main></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_dates_are_civil() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_083_200), "2026-12-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(0.04), 0.05);
    }

    #[test]
    fn an_empty_chart_says_so() {
        let c = chart("t", "ms", &[], (0.0, 10.0));
        assert!(c.contains("no data") && c.ends_with("</svg>"));
    }
}
