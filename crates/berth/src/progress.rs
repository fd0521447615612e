//! Push and pull progress on a terminal, as docker draws it: a line per
//! layer redrawn in place with a progress bar.

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
