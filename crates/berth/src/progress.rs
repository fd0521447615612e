//! Progress as docker draws it: push and pull on a terminal, a line per
//! layer redrawn in place with a progress bar; build steps as the classic
//! builder prints them, step lines in bold on a terminal.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_registry_client::progress::Progress;

/// A terminal: layer rows redrawn in place.
pub struct Bars {
    state: Mutex<BarState>,
}

struct BarState {
    rows: Vec<(String, String)>,
    /// Rows drawn last time (to move up over).
    drawn: usize,
    last: Option<Instant>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars {
            state: Mutex::new(BarState {
                rows: Vec::new(),
                drawn: 0,
                last: None,
            }),
        }
    }
}

fn human(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}kB", n / 1e3)
    } else {
        format!("{n}B")
    }
}

/// docker's bar: `[=====>      ]  12.3MB/52.4MB`.
pub fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(0);
    let mut b = "=".repeat(filled as usize);
    if filled < WIDTH {
        b.push('>');
        b.push_str(&" ".repeat((WIDTH - filled - 1) as usize));
    }
    format!("[{b}]  {}/{}", human(done), human(total))
}

impl Bars {
    fn redraw(&self, st: &mut BarState) {
        let mut out = std::io::stdout().lock();
        if st.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", st.drawn);
        }
        for (id, status) in &st.rows {
            let _ = writeln!(out, "\x1b[2K{id}: {status}");
        }
        st.drawn = st.rows.len();
        let _ = out.flush();
    }

    fn set(&self, id: &str, status: String, force: bool) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match st.rows.iter_mut().find(|(i, _)| i == id) {
            Some(row) => row.1 = status,
            None => st.rows.push((id.to_string(), status)),
        }
        // Bars move often: at most ten redraws a second.
        let due = st
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if force || due {
            st.last = Some(Instant::now());
            self.redraw(&mut st);
        }
    }
}

impl Progress for Bars {
    fn line(&self, text: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // A line of its own ends the block of layer rows above it.
        self.redraw(&mut st);
        st.rows.clear();
        st.drawn = 0;
        println!("{text}");
    }
    fn layer(&self, id: &str, status: &str) {
        self.set(id, status.to_string(), true);
    }
    fn bytes(&self, id: &str, verb: &str, done: u64, total: u64) {
        // The last one is always drawn.
        self.set(id, format!("{verb:<12}{}", bar(done, total)), done >= total);
    }
}

/// `berth build`'s steps on a writer: docker's classic text, with step
/// lines bold and step results coloured when it is a terminal.
pub struct BuildSteps<W: Write + Send> {
    out: Mutex<W>,
    colour: bool,
}

impl<W: Write + Send> BuildSteps<W> {
    pub fn new(out: W, colour: bool) -> Self {
        BuildSteps {
            out: Mutex::new(out),
            colour,
        }
    }
}

impl<W: Write + Send> berth_builder::progress::Progress for BuildSteps<W> {
    fn event(&self, event: &berth_builder::progress::Event<'_>) {
        use berth_builder::progress::Event;
        let text = event.text();
        let text: &[u8] = &text;
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let style = match event {
            Event::Step { .. } => Some("\x1b[1m"),
            Event::Cached | Event::Done(_) => Some("\x1b[36m"),
            Event::Output(_) => None,
        };
        let _ = match style.filter(|_| self.colour) {
            Some(style) => {
                let line = text.strip_suffix(b"\n").unwrap_or(text);
                out.write_all(style.as_bytes())
                    .and_then(|_| out.write_all(line))
                    .and_then(|_| out.write_all(b"\x1b[0m\n"))
            }
            None => out.write_all(text),
        };
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars() {
        assert_eq!(bar(0, 100), format!("[>{}]  0B/100B", " ".repeat(49)));
        assert_eq!(bar(50, 100).matches('=').count(), 25);
        assert_eq!(bar(100, 100), format!("[{}]  100B/100B", "=".repeat(50)));
        assert_eq!(bar(5, 0), format!("[>{}]  5B/0B", " ".repeat(49)));
        assert!(bar(12_300_000, 52_400_000).ends_with("12.3MB/52.4MB"));
    }
}
