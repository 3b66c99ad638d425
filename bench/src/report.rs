//! The report of a benchmark run: `report.json` (the points as measured),
//! `report.md` (tables, ratios against the references measured in the same run,
//! the targets) and `chart.svg` (throughput and p99 latency by concurrency).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::model::{Contender, Point, Workload};

/// Everything a report needs besides the points.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    /// Measured seconds of each point in each round.
    pub(crate) seconds_per_point: f64,
    /// Interleaved rounds; each point is the median over them.
    pub(crate) rounds: u32,
    /// Products seeded in the database.
    pub(crate) products: u32,
    /// The machine, e.g. "2 cores, Linux x86_64".
    pub(crate) machine: String,
    /// When the run started, RFC 3339.
    pub(crate) started: String,
}

/// Creates `dir` if needed and writes `report.json`, `report.md` and `chart.svg`
/// into it; returns the markdown report.
pub(crate) fn write_all(dir: &Path, info: &RunInfo, points: &[Point]) -> io::Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(points)? + "\n",
    )?;
    let md = markdown(info, points);
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(dir.join("chart.svg"), svg(info, points))?;
    Ok(md)
}

fn find(points: &[Point], w: Workload, c: u32, who: Contender) -> Option<&Point> {
    points
        .iter()
        .find(|p| p.workload == w && p.concurrency == c && p.contender == who)
}

/// The workloads present, in report order.
fn workloads(points: &[Point]) -> Vec<Workload> {
    let mut ws: Vec<Workload> = points.iter().map(|p| p.workload).collect();
    ws.sort();
    ws.dedup();
    ws
}

/// The points of workload `w`.
fn of(points: &[Point], w: Workload) -> impl Iterator<Item = &Point> {
    points.iter().filter(move |p| p.workload == w)
}

/// The concurrency levels present for `w`, ascending.
fn levels(points: &[Point], w: Workload) -> Vec<u32> {
    let mut cs: Vec<u32> = of(points, w).map(|p| p.concurrency).collect();
    cs.sort_unstable();
    cs.dedup();
    cs
}

/// `a / b` when `b` is a usable reference.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.2}×"))
}

const HEAD: &str = "| concurrency | contender | req/s | p50 ms | p99 ms | p99.9 ms | CPU ms/1k | DB CPU ms/1k \
                    | peak RSS MiB | errors | vs pgbench | vs python | vs go |\n\
                    |---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn markdown(info: &RunInfo, points: &[Point]) -> String {
    let (started, machine) = (info.started.trim(), info.machine.trim());
    let (secs, rounds, products) = (info.seconds_per_point, info.rounds, info.products);
    let mut o = format!(
        "# Strata benchmark\n\nStarted {started} on {machine}: {secs} s per point, {rounds} interleaved \
         rounds (median reported), {products} products.\n\n"
    );
    for w in workloads(points) {
        let _ = writeln!(o, "## {}\n\n{HEAD}", w.name());
        for c in levels(points, w) {
            let vs = |rps, who| times(find(points, w, c, who).and_then(|r: &Point| ratio(rps, r.rps)));
            for p in Contender::ALL.iter().filter_map(|who| find(points, w, c, *who)) {
                let (name, cpu, rss) = (p.contender.name(), opt(p.cpu_ms_per_1k), opt(p.peak_rss_mib));
                let (rps, db, errors) = (p.rps, p.db_cpu_ms_per_1k, p.errors);
                let vs_all = [Contender::Pgbench, Contender::Python, Contender::Go].map(|who| vs(rps, who));
                let lat = format!("{:.2} | {:.2} | {:.2}", p.p50_ms, p.p99_ms, p.p999_ms);
                let vs_all = vs_all.join(" | ");
                let _ = writeln!(
                    o,
                    "| {c} | {name} | {rps:.0} | {lat} | {cpu} | {db:.1} | {rss} | {errors} | {vs_all} |"
                );
            }
        }
        o.push('\n');
    }
    o.push_str(&stack_section(points));
    let ts = targets(points);
    let met = ts
        .iter()
        .filter(|t| matches!(t.measured, Some((true, _))))
        .count();
    let (measured, all) = (ts.iter().filter(|t| t.measured.is_some()).count(), ts.len());
    let _ = writeln!(
        o,
        "## Targets\n\n{met} of {measured} measured targets met ({all} in all).\n"
    );
    for t in &ts {
        let _ = match &t.measured {
            Some((pass, figure)) => {
                writeln!(o, "- {} {}: {figure}", ["❌", "✅"][usize::from(*pass)], t.label)
            }
            None => writeln!(o, "- ➖ {}: not measured", t.label),
        };
    }
    let _ = writeln!(
        o,
        "\n## How to read this\n\n\
         Every ratio compares figures measured in this same run: pgbench (the limit: the same SQL \
         with no service in between), the Python implementation (the stack Strata replaces) and \
         the Go one (grpc-go and pgx, the peer its users would otherwise pick) are references, not \
         numbers from elsewhere. The contenders ran in interleaved rounds and each figure is the median \
         over the rounds, so slow drift of the machine affects all of them alike. CPU ms/1k is \
         the CPU time spent per 1 000 requests by the serving process and by the database. \
         The whole machine ({machine}) is shared by the database, the service and the load \
         generator, so absolute figures are low; the ratios are what carries over."
    );
    o
}

/// What Strata's client stack adds to a caller's latency: the same data
/// service called through it (`stack`) and through a bare tonic channel
/// (`strata`), at each point where both were measured.
fn stack_section(points: &[Point]) -> String {
    let mut rows = String::new();
    for w in workloads(points) {
        for c in levels(points, w) {
            let (Some(bare), Some(stack)) = (
                find(points, w, c, Contender::Strata),
                find(points, w, c, Contender::Stack),
            ) else {
                continue;
            };
            let _ = writeln!(
                rows,
                "| {} | {c} | {:.2} | {:.2} | {:+.2} | {:.2} | {:.2} | {:+.2} | {} |",
                w.name(),
                bare.p50_ms,
                stack.p50_ms,
                stack.p50_ms - bare.p50_ms,
                bare.p99_ms,
                stack.p99_ms,
                stack.p99_ms - bare.p99_ms,
                times(ratio(stack.rps, bare.rps)),
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "## The client stack\n\nThe same data service called through Strata's client stack \
         (`stack`: request id and deadline per call, retry policy, hedged reads, breakers, \
         power-of-two-choices balancing) and through a bare tonic channel (`strata`).\n\n\
         | workload | concurrency | p50 bare ms | p50 stack ms | p50 added | p99 bare ms | \
         p99 stack ms | p99 added | req/s stack vs bare |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}\n"
    )
}

/// One of the targets; `measured` is `None` when its points are missing.
#[derive(Debug)]
struct Target {
    label: String,
    measured: Option<(bool, String)>,
}

fn targets(points: &[Point]) -> Vec<Target> {
    use Contender::{Go, Pgbench, Python, Strata};
    use Workload::{Get, Update};
    // A point with errors measured something else than the workload (a failing
    // reference is fast at failing): no target is judged on it.
    let at = |w, c, who| find(points, w, c, who).filter(|p| p.errors == 0);
    let target = |label: String, measured| Target { label, measured };
    let rps_vs = |w: Workload, c, k: f64, other: Contender| {
        let (wn, on) = (w.name(), other.name());
        let label = format!("{wn}: strata req/s ≥ {k:?} × {on} at concurrency {c}");
        let measured = at(w, c, Strata).zip(at(w, c, other)).map(|(s, r)| {
            let (sr, rr, x) = (s.rps, r.rps, times(ratio(s.rps, r.rps)));
            (sr >= k * rr, format!("{sr:.0} vs {rr:.0} req/s ({x})"))
        });
        target(label, measured)
    };
    // Strata's figure `mine` at most `k` times the reference's `other`.
    let at_most = |label: String, mine: Option<f64>, other: Option<f64>, k: f64, unit: &str| {
        let measured = mine.zip(other).map(|(m, r)| {
            let x = times(ratio(m, r));
            (m <= k * r, format!("{m:.1} vs {r:.1} {unit} ({x})"))
        });
        target(label, measured)
    };
    let db_per_get = |c, other: Contender| {
        let db = |who| at(Get, c, who).map(|p: &Point| p.db_cpu_ms_per_1k);
        let on = other.name();
        let label = format!("get: database CPU ms/1k under strata ≤ 1.0 × under {on} at concurrency {c}");
        at_most(label, db(Strata), db(other), 1.0, "ms/1k")
    };
    let cpu_vs = |w: Workload, c, k: f64, other: Contender| {
        let cpu = |who| at(w, c, who).and_then(|p: &Point| p.cpu_ms_per_1k);
        let (wn, on) = (w.name(), other.name());
        let label = format!("{wn}: strata CPU ms/1k ≤ {k:?} × {on}'s at concurrency {c}");
        at_most(label, cpu(Strata), cpu(other), k, "ms/1k")
    };
    // Issue 10's targets: get ≥ 0.5× pgbench; the database works no more per
    // get under Strata than under pgbench; the service's CPU per get no more
    // than the database's under pgbench; update ≥ 0.8× pgbench.
    let mut out = Vec::from([16, 64].map(|c| rps_vs(Get, c, 0.5, Pgbench)));
    out.extend([16, 64].map(|c| db_per_get(c, Pgbench)));
    for c in [16, 64] {
        let cpu = at(Get, c, Strata).and_then(|s| s.cpu_ms_per_1k);
        let db = at(Get, c, Pgbench).map(|p| p.db_cpu_ms_per_1k);
        let label = format!("get: strata CPU ms/1k ≤ 1.0 × the database's under pgbench at concurrency {c}");
        out.push(at_most(label, cpu, db, 1.0, "ms/1k"));
    }
    out.extend([16, 64].map(|c| rps_vs(Update, c, 0.8, Pgbench)));
    // Against the stack Strata replaces.
    out.extend([Get, Update].map(|w| cpu_vs(w, 64, 0.1, Python)));
    out.extend([Get, Update].map(|w| rps_vs(w, 64, 3.0, Python)));
    for w in [Get, Update] {
        let label = format!("{}: strata peak RSS ≤ 40 MiB at concurrency 64", w.name());
        let rss = at(w, 64, Strata).and_then(|s| s.peak_rss_mib);
        out.push(target(label, rss.map(|m| (m <= 40.0, format!("{m:.1} MiB")))));
    }
    // Issue 11's targets, against the Go peer: at least its throughput, at
    // most its CPU per request, its peak memory and its database's CPU per get.
    let levels = [(Get, 16), (Get, 64), (Update, 16), (Update, 64)];
    out.extend(levels.map(|(w, c)| rps_vs(w, c, 1.0, Go)));
    out.extend(levels.map(|(w, c)| cpu_vs(w, c, 1.0, Go)));
    for w in [Get, Update] {
        let rss = |who| at(w, 64, who).and_then(|p: &Point| p.peak_rss_mib);
        let label = format!("{}: strata peak RSS ≤ 1.0 × go's at concurrency 64", w.name());
        out.push(at_most(label, rss(Strata), rss(Go), 1.0, "MiB"));
    }
    out.extend([16, 64].map(|c| db_per_get(c, Go)));
    out
}

/// What a chart panel plots of a point.
type Metric = fn(&Point) -> f64;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 640.0;
const HEADER: f64 = 52.0;
const BOLD: &str = "font-weight=\"bold\"";
const CENTRE: &str = "text-anchor=\"middle\"";
const MIDDLE: &str = "text-anchor=\"middle\" fill=\"#555\"";

fn colour(who: Contender) -> &'static str {
    match who {
        Contender::Pgbench => "#8a8a8a",
        Contender::Strata => "#0b6e99",
        Contender::Python => "#e07b00",
        Contender::Go => "#3a9d23",
        Contender::Stack => "#7b3fa0",
    }
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    s.replace(|c: char| c.is_control(), " ")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes a `<text>` element at (`x`, `y`) with `attrs` and escaped `content`.
fn text(o: &mut String, (x, y): (f64, f64), attrs: &str, content: &str) {
    let content = esc(content);
    let _ = writeln!(o, "<text x=\"{x:.1}\" y=\"{y:.1}\" {attrs}>{content}</text>");
}

/// A "nice" step (1, 2, 2.5 or 5 × 10ⁿ) and the number of steps from 0 that
/// cover `max`: 3 or 4 steps, i.e. 4 or 5 gridlines.
fn nice_scale(max: f64) -> (f64, u32) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .map(|m| m * mag)
        .into_iter()
        .find(|s| *s >= raw * (1.0 - 1e-9));
    let step = step.unwrap_or(10.0 * mag);
    (step, (max / step - 1e-9).ceil().max(1.0) as u32)
}

/// Decimals needed to print multiples of `step` exactly.
fn decimals(step: f64) -> usize {
    let exact = |d: i32| (step * 10f64.powi(d) - (step * 10f64.powi(d)).round()).abs() < 1e-6;
    (0..6).find(|d| exact(*d)).unwrap_or(6) as usize
}

fn svg(info: &RunInfo, points: &[Point]) -> String {
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\" fill=\"#222\">\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\n"
    );
    let (big, sub) = (
        format!("font-size=\"16\" {BOLD}"),
        format!("{} · started {}", info.machine, info.started),
    );
    text(&mut o, (16.0, 22.0), &big, "Strata benchmark");
    text(&mut o, (16.0, 40.0), "font-size=\"11\" fill=\"#666\"", &sub);
    let present = Contender::ALL
        .into_iter()
        .filter(|who| points.iter().any(|p| p.contender == *who));
    let present: Vec<Contender> = present.collect();
    for (i, who) in present.iter().enumerate() {
        let x = WIDTH - 16.0 - (present.len() - i) as f64 * 100.0;
        let (c, x2, cx) = (colour(*who), x + 24.0, x + 12.0);
        let _ = write!(
            o,
            "<line x1=\"{x}\" y1=\"22\" x2=\"{x2}\" y2=\"22\" stroke=\"{c}\" stroke-width=\"2\"/>"
        );
        let _ = write!(o, "<circle cx=\"{cx}\" cy=\"22\" r=\"3.5\" fill=\"{c}\"/>");
        text(&mut o, (x + 30.0, 26.0), "", who.name());
    }
    let ws = workloads(points);
    if ws.is_empty() {
        text(&mut o, (WIDTH / 2.0, HEIGHT / 2.0), MIDDLE, "no points measured");
    }
    let metrics: [(&str, &str, Metric); 2] = [
        ("throughput", "req/s", |p| p.rps),
        ("p99 latency", "p99 (ms)", |p| p.p99_ms),
    ];
    let row_h = (HEIGHT - HEADER) / ws.len().max(1) as f64;
    for (r, w) in ws.iter().enumerate() {
        for (col, (title, axis, value)) in metrics.iter().enumerate() {
            let (x0, y0) = (col as f64 * WIDTH / 2.0, HEADER + r as f64 * row_h);
            let frame = (x0, y0, WIDTH / 2.0, row_h);
            let heading = format!("{}: {title}", w.name());
            panel(&mut o, frame, [&heading, axis], points, *w, *value);
        }
    }
    o + "</svg>\n"
}

/// One panel, titled `heading` with y axis `axis`: `value` of each contender's
/// points of workload `w` against concurrency.
fn panel(
    o: &mut String,
    frame: (f64, f64, f64, f64),
    [heading, axis]: [&str; 2],
    points: &[Point],
    w: Workload,
    value: Metric,
) {
    let (x0, y0, w0, h0) = frame;
    let (px, py, pw, ph) = (x0 + 72.0, y0 + 28.0, w0 - 96.0, h0 - 76.0);
    let finite = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let cs = levels(points, w);
    let max = of(points, w).map(|p| finite(value(p))).fold(0.0, f64::max);
    let (step, n) = nice_scale(max);
    let (top, d) = (step * f64::from(n), decimals(step));
    let y_of = |v: f64| py + ph - finite(v).min(top) / top * ph;
    let x_of = |i: usize| px + (i as f64 + 0.5) * pw / cs.len().max(1) as f64;
    o.push_str("<g>\n");
    text(o, (px, y0 + 16.0), BOLD, heading);
    for i in 0..=n {
        let (v, x2) = (step * f64::from(i), px + pw);
        let (y, stroke) = (y_of(v), if i == 0 { "#999" } else { "#e3e3e3" });
        let _ = write!(
            o,
            "<line x1=\"{px}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>"
        );
        text(o, (px - 6.0, y + 4.0), "text-anchor=\"end\"", &format!("{v:.d$}"));
    }
    for (i, c) in cs.iter().enumerate() {
        text(o, (x_of(i), py + ph + 16.0), CENTRE, &c.to_string());
    }
    text(o, (px + pw / 2.0, py + ph + 34.0), MIDDLE, "concurrency");
    let (ax, ay) = (x0 + 16.0, py + ph / 2.0);
    let rotated = format!("transform=\"rotate(-90 {ax:.1} {ay:.1})\" {MIDDLE}");
    text(o, (ax, ay), &rotated, axis);
    for who in Contender::ALL {
        let series: Vec<(f64, f64, &Point)> = (cs.iter().enumerate())
            .filter_map(|(i, c)| find(points, w, *c, who).map(|p| (x_of(i), y_of(value(p)), p)))
            .collect();
        let (name, col) = (who.name(), colour(who));
        let path: Vec<String> = series.iter().map(|(x, y, _)| format!("{x:.1},{y:.1}")).collect();
        if !path.is_empty() {
            let path = path.join(" ");
            let style = format!("fill=\"none\" stroke=\"{col}\" stroke-width=\"2\"");
            let _ = writeln!(o, "<polyline class=\"series-{name}\" points=\"{path}\" {style}/>");
        }
        for (x, y, p) in &series {
            let v = value(p);
            let (c, v) = (p.concurrency, opt(v.is_finite().then_some(v)));
            let tip = esc(&format!("{name} at {c}: {v}"));
            let circle = format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{col}\">");
            let _ = writeln!(o, "{circle}<title>{tip}</title></circle>");
        }
    }
    o.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use Contender::{Go, Pgbench, Python, Stack, Strata};
    use Workload::{Get, Update};

    fn point(workload: Workload, concurrency: u32, contender: Contender, rps: f64) -> Point {
        let serving = contender != Pgbench;
        let (p50_ms, p99_ms, p999_ms, db_cpu_ms_per_1k, errors) = (1.0, 4.0, 9.0, 30.0, 0);
        let (cpu_ms_per_1k, peak_rss_mib) = (serving.then_some(20.0), serving.then_some(25.0));
        Point {
            workload,
            concurrency,
            contender,
            rps,
            p50_ms,
            p99_ms,
            p999_ms,
            cpu_ms_per_1k,
            db_cpu_ms_per_1k,
            peak_rss_mib,
            errors,
        }
    }

    fn full() -> Vec<Point> {
        let levels = [Get, Update]
            .into_iter()
            .flat_map(|w| [1, 16, 64].map(|c| (w, c)));
        let rows = levels.flat_map(|(w, c)| {
            [
                (Pgbench, 1000.0),
                (Strata, 500.0),
                (Python, 100.0),
                (Go, 400.0),
                (Stack, 450.0),
            ]
            .map(|(who, rps)| point(w, c, who, rps))
        });
        rows.collect()
    }

    fn info() -> RunInfo {
        let machine = "2 cores, Linux <x86_64> & co".to_owned();
        let (started, seconds_per_point) = ("2026-01-01T00:00:00Z".to_owned(), 10.0);
        RunInfo {
            seconds_per_point,
            rounds: 3,
            products: 1000,
            machine,
            started,
        }
    }

    #[test]
    fn json_is_an_array_of_points_with_exactly_the_keys() {
        let dir = std::env::temp_dir().join(format!("strata-report-test-{}", std::process::id()));
        let md = write_all(&dir, &info(), &full()).unwrap();
        let read = |name| std::fs::read_to_string(dir.join(name)).unwrap();
        let (json, svg_text) = (read("report.json"), read("chart.svg"));
        assert_eq!(read("report.md"), md);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg_text.starts_with("<svg"));
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let array = json.as_array().unwrap();
        assert_eq!(array.len(), 30, "2 workloads × 3 levels × 5 contenders");
        let mut want: Vec<&str> = "workload concurrency contender rps p50_ms p99_ms p999_ms cpu_ms_per_1k \
                                   db_cpu_ms_per_1k peak_rss_mib errors"
            .split_whitespace()
            .collect();
        want.sort_unstable();
        for object in array {
            let mut keys: Vec<&str> = object.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, want);
        }
        let (first, second, last) = (&array[0], &array[1], &array[23]);
        assert!(first["workload"] == "get" && first["contender"] == "pgbench");
        assert!(first["cpu_ms_per_1k"].is_null() && first["peak_rss_mib"].is_null());
        assert!(second["contender"] == "strata" && last["workload"] == "update");
    }

    #[test]
    fn ratio_columns_are_against_same_run_references() {
        let md = markdown(&info(), &full());
        let strata =
            "| 16 | strata | 500 | 1.00 | 4.00 | 9.00 | 20.0 | 30.0 | 25.0 | 0 | 0.50× | 5.00× | 1.25× |";
        assert!(md.contains(strata));
        let pgbench =
            "| 64 | pgbench | 1000 | 1.00 | 4.00 | 9.00 | — | 30.0 | — | 0 | 1.00× | 10.00× | 2.50× |";
        assert!(md.contains(pgbench));
        let go = "| 1 | go | 400 | 1.00 | 4.00 | 9.00 | 20.0 | 30.0 | 25.0 | 0 | 0.40× | 4.00× | 1.00× |";
        assert!(md.contains(go), "{md}");
        // Without python points the python ratio is blank.
        let ps: Vec<Point> = full().into_iter().filter(|p| p.contender != Python).collect();
        assert!(markdown(&info(), &ps).contains("| 25.0 | 0 | 0.50× |  | 1.25× |"));
        // Targets: 0.5 ≥ 0.5 met, 0.5 < 0.8 not met.
        let met = "- ✅ get: strata req/s ≥ 0.5 × pgbench at concurrency 16: 500 vs 1000 req/s (0.50×)";
        assert!(md.contains(met), "{md}");
        assert!(md.contains("- ❌ update: strata req/s ≥ 0.8 × pgbench at concurrency 64"));
    }

    #[test]
    fn targets_against_the_go_peer() {
        let mut ps = full();
        for p in ps.iter_mut().filter(|p| p.contender == Go) {
            p.rps = 600.0;
            p.db_cpu_ms_per_1k = 25.0;
            p.peak_rss_mib = Some(30.0);
        }
        let md = markdown(&info(), &ps);
        let rps = "- ❌ update: strata req/s ≥ 1.0 × go at concurrency 16: 500 vs 600 req/s (0.83×)";
        assert!(md.contains(rps), "{md}");
        assert!(md.contains(
            "- ✅ get: strata CPU ms/1k ≤ 1.0 × go's at concurrency 64: 20.0 vs 20.0 ms/1k (1.00×)"
        ));
        assert!(md.contains(
            "- ✅ update: strata peak RSS ≤ 1.0 × go's at concurrency 64: 25.0 vs 30.0 MiB (0.83×)"
        ));
        let db = "- ❌ get: database CPU ms/1k under strata ≤ 1.0 × under go at concurrency 16: 30.0 vs 25.0 ms/1k (1.20×)";
        assert!(md.contains(db), "{md}");
        // A failing peer is not a reference.
        for p in ps.iter_mut().filter(|p| p.contender == Go) {
            p.errors = 1;
        }
        let md = markdown(&info(), &ps);
        assert!(md.contains("- ➖ get: strata req/s ≥ 1.0 × go at concurrency 64: not measured"));
    }

    #[test]
    fn missing_target_points_are_not_measured() {
        let md = markdown(&info(), &[point(Get, 16, Strata, 500.0)]);
        assert!(md.contains("- ➖ update: strata req/s ≥ 0.8 × pgbench at concurrency 64: not measured"));
        assert!(md.contains("- ➖ get: strata req/s ≥ 0.5 × pgbench at concurrency 16: not measured"));
        let cpu =
            "- ➖ get: strata CPU ms/1k ≤ 1.0 × the database's under pgbench at concurrency 16: not measured";
        assert!(md.contains(cpu), "{md}");
        assert!(md.contains("0 of 0 measured targets met (26 in all)"), "{md}");
    }

    /// Well-formed enough: balanced tags, only `name="value"` attributes, no stray `<`, `>` or `&`.
    fn assert_xmlish(s: &str) {
        assert!(s.starts_with("<svg ") && s.trim_end().ends_with("</svg>"), "{s}");
        let (mut open, mut rest) = (Vec::new(), s);
        while let Some(start) = rest.find('<') {
            let content = rest[..start]
                .replace("&amp;", "")
                .replace("&lt;", "")
                .replace("&gt;", "");
            assert!(!content.contains(['&', '>']), "{content}");
            let end = start + rest[start..].find('>').unwrap();
            let (tag, closing) = (&rest[start + 1..end], rest[start + 1..].starts_with('/'));
            let (name, mut attrs) = tag
                .trim_start_matches('/')
                .split_once(' ')
                .unwrap_or((tag.trim_start_matches('/'), ""));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{tag}");
            while let Some((key, value)) = attrs.trim_start().split_once("=\"") {
                assert!(
                    key.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'),
                    "{tag}"
                );
                let (value, more) = value.split_once('"').unwrap();
                assert!(
                    !value.contains(['<', '>']) && !value.replace("&amp;", "").contains('&'),
                    "{tag}"
                );
                attrs = more;
            }
            assert!(matches!(attrs.trim(), "" | "/"), "{tag}");
            if closing {
                assert_eq!(open.pop(), Some(name), "{tag}");
            } else if !tag.ends_with('/') {
                open.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty() && rest.trim().is_empty(), "{open:?}");
    }

    #[test]
    fn the_client_stack_section_shows_what_the_stack_adds() {
        let mut points = full();
        for p in points.iter_mut().filter(|p| p.contender == Stack) {
            p.p99_ms += 1.25;
        }
        let section = stack_section(&points);
        assert!(
            section.contains("| get | 16 | 1.00 | 1.00 | +0.00 | 4.00 | 5.25 | +1.25 | 0.90× |"),
            "{section}"
        );
        assert_eq!(section.matches("| update |").count(), 3, "{section}");
        let without: Vec<Point> = points.into_iter().filter(|p| p.contender != Stack).collect();
        assert!(
            stack_section(&without).is_empty(),
            "nothing to compare, no section"
        );
    }

    #[test]
    fn svg_has_a_series_per_contender_and_survives_degenerate_input() {
        let s = svg(&info(), &full());
        assert_xmlish(&s);
        for who in Contender::ALL {
            let series = format!("<polyline class=\"series-{}\"", who.name());
            assert_eq!(s.matches(&series).count(), 4);
        }
        assert!(s.contains("&lt;x86_64&gt; &amp; co") && !s.contains("<x86_64>"));
        let odd = [
            vec![],
            vec![point(Update, 64, Python, 0.0)],
            vec![point(Get, 8, Strata, f64::NAN)],
        ];
        for ps in odd {
            let s = svg(&info(), &ps);
            assert_xmlish(&s);
            assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
        }
        assert_eq!([nice_scale(0.0), nice_scale(1000.0)], [(0.25, 4), (250.0, 4)]);
        assert_eq!(
            [nice_scale(1234.0), nice_scale(9000.0)],
            [(500.0, 3), (2500.0, 4)]
        );
        assert_eq!([decimals(0.25), decimals(2.5), decimals(2500.0)], [2, 1, 0]);
    }
}
