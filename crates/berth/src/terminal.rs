//! The CLI's own terminal and stdio, given to the engine as the caller of
//! a foreground process (`run`, `start -a`, `exec`, `attach`).

use std::os::fd::AsFd;

/// The process's terminal: its size from stdout (else stdin), raw mode on
/// stdin.
pub struct Tty;

impl berth_engine::Terminal for Tty {
    fn size(&self) -> Option<(u16, u16)> {
        let out = std::io::stdout();
        let inp = std::io::stdin();
        let ws = rustix::termios::tcgetwinsize(out.as_fd())
            .or_else(|_| rustix::termios::tcgetwinsize(inp.as_fd()))
            .ok()?;
        (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
    }

    fn raw(&self) -> Option<Box<dyn std::any::Any>> {
        RawMode::enter().map(|r| Box::new(r) as Box<dyn std::any::Any>)
    }
}

/// stdin in raw mode for as long as this lives.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)
            .ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Runs `f` with our stdio as the caller: stdin read when `stdin`.
pub fn with_caller<T>(stdin: bool, f: impl FnOnce(&mut berth_engine::Caller<'_>) -> T) -> T {
    let input = std::io::stdin();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let tty = Tty;
    let mut caller = berth_engine::Caller {
        stdin: stdin.then(|| input.as_fd()),
        stdout: &mut out,
        stderr: &mut err,
        terminal: Some(&tty),
    };
    f(&mut caller)
}
