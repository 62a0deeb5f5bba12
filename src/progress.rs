//! Progress of long work, as the library reports it: a live bar when stderr is a
//! terminal, and otherwise one plain line (done, total, rate, ETA) every
//! [`log_interval`] on stderr, so Slurm and CI logs show a run is alive
//! without a flood of redraws or escape codes.
//!
//! Library code takes an [`indicatif::ProgressBar`] in its options (or makes
//! one with [`bar`]); callers that want silence pass [`hidden`].

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// Seconds between two log lines when stderr is not a terminal
/// (`$PROTFAM_PROGRESS_SECONDS`, default 30).
pub fn log_interval() -> Duration {
    std::env::var("PROTFAM_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}

/// A progress reporter for `len` items counted in `unit` (`len` 0: unknown yet,
/// set later with `set_length`).
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(len);
        if let Some(style) = style(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {unit} ({{rate}}, ETA {{eta_known}}) {{msg}}"
        )) {
            bar.set_style(style);
        }
        bar
    } else {
        log_lines(len, unit, log_interval())
    }
}

/// A reporter that shows nothing.
pub fn hidden() -> ProgressBar {
    ProgressBar::hidden()
}

/// The non-terminal form of [`bar`]: a plain line on stderr at most every `every`.
pub fn log_lines(len: u64, unit: &str, every: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::new(every, std::io::stderr())), 1),
    );
    if let Some(style) = style(&format!(
        "progress [{{elapsed_precise}}] {{pos}}/{{len}} {unit} ({{rate}}, ETA {{eta_known}}) {{msg}}"
    )) {
        bar.set_style(style);
    }
    // Steps that advance rarely (one tool process, one long search) still log.
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

/// Both forms' style: `{rate}` is items per second with one decimal (three
/// significant digits at most; indicatif's `{per_sec}` prints four decimals),
/// and `{eta_known}` is `?` until the first item is done (not indicatif's `0s`).
fn style(template: &str) -> Option<ProgressStyle> {
    let style = ProgressStyle::with_template(template).ok()?;
    Some(
        style
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            })
            .with_key("eta_known", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = if state.pos() == 0 {
                    w.write_str("?")
                } else {
                    write!(w, "{:#}", HumanDuration(state.eta()))
                };
            }),
    )
}

/// `"10.7/s"`, `"5577/s"`.
fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        "?/s".to_string()
    } else if per_sec >= 100.0 {
        format!("{per_sec:.0}/s")
    } else {
        format!("{per_sec:.1}/s")
    }
}

/// A [`TermLike`] that writes at most one finished line per interval.
struct LogLines<W: Write + Send> {
    every: Duration,
    state: Mutex<LogState<W>>,
}

struct LogState<W> {
    out: W,
    last: Option<Instant>,
    /// Text of the line being drawn (indicatif writes a line in pieces).
    pending: String,
}

impl<W: Write + Send> LogLines<W> {
    fn new(every: Duration, out: W) -> Self {
        LogLines {
            every,
            state: Mutex::new(LogState {
                out,
                last: None,
                pending: String::new(),
            }),
        }
    }

    fn emit(&self, line: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = std::mem::take(&mut state.pending);
        text.push_str(line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let due = state.last.is_none_or(|t| t.elapsed() >= self.every);
        if due {
            state.last = Some(Instant::now());
            writeln!(state.out, "{text}")?;
        }
        Ok(())
    }
}

impl<W: Write + Send> std::fmt::Debug for LogLines<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLines").field("every", &self.every).finish()
    }
}

impl<W: Write + Send> TermLike for LogLines<W> {
    fn width(&self) -> u16 {
        // Wide enough that indicatif never wraps or truncates a line.
        400
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.emit(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending.push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pending.clear();
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut state.pending)
        };
        self.emit(&pending)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared in-memory sink standing in for stderr.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_throttled_and_plain() {
        let sink = Sink::default();
        let lines = LogLines::new(Duration::from_millis(200), sink.clone());
        lines.write_str("progress 1/10").unwrap();
        lines.flush().unwrap();
        // Within the interval: dropped.
        lines.write_line("progress 2/10").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        lines.write_line("progress 3/10").unwrap();
        lines.write_line("").unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "progress 1/10\nprogress 3/10\n");
    }

    #[test]
    fn log_bar_writes_counts_without_escape_codes() {
        let sink = Sink::default();
        let bar = ProgressBar::with_draw_target(
            Some(5),
            ProgressDrawTarget::term_like(Box::new(LogLines::new(Duration::ZERO, sink.clone()))),
        );
        bar.set_style(ProgressStyle::with_template("{pos}/{len} rows").unwrap());
        bar.inc(2);
        bar.tick();
        bar.finish();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("2/5 rows") || text.contains("5/5 rows"), "{text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn log_lines_show_a_short_rate_and_no_eta_before_the_first_item() {
        let sink = Sink::default();
        let bar = ProgressBar::with_draw_target(
            Some(100),
            ProgressDrawTarget::term_like(Box::new(LogLines::new(Duration::ZERO, sink.clone()))),
        );
        bar.set_style(style("{pos}/{len} rows ({rate}, ETA {eta_known}) {msg}").unwrap());
        bar.set_message("0 cached");
        bar.tick();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("0/100 rows (0.0/s, ETA ?) 0 cached"), "{text:?}");
        assert_eq!(rate(10.728_1), "10.7/s");
        assert_eq!(rate(5577.3), "5577/s");
        assert_eq!(rate(f64::NAN), "?/s");
    }
}
