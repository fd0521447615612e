//! Resizing a container's or an exec's terminal from outside its monitor
//! (the Engine API's `resize`): the process's own terminal is reached
//! through `/proc/PID/fd/0` and given the size, which the kernel passes
//! on as SIGWINCH. The process may have put anything at its fd 0, so it is
//! opened without blocking and without becoming our terminal, and used
//! only if it is a pseudo-terminal.

use crate::db::State;
use crate::{Engine, EngineError};

/// Linux's majors of Unix98 pseudo-terminal slaves (`/dev/pts/N`).
const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

fn resize_pid(pid: i32, rows: u16, cols: u16) -> Result<(), EngineError> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("/proc/{pid}/fd/0");
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::io(format!("open {path}"), e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| EngineError::io("fstat", e.into()))?;
    let is_pts = rustix::fs::FileType::from_raw_mode(st.st_mode)
        == rustix::fs::FileType::CharacterDevice
        && PTS_MAJORS.contains(&rustix::fs::major(st.st_rdev));
    if !is_pts {
        return Err(EngineError::Conflict(
            "the process has no terminal to resize".into(),
        ));
    }
    rustix::termios::tcsetwinsize(
        &fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(|e| EngineError::io("set the terminal's size", e.into()))
}

impl Engine {
    /// Gives container `key`'s terminal `rows` x `cols`.
    pub fn resize(&mut self, key: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let rec = self.get(key)?;
        if !matches!(rec.state, State::Running | State::Paused) || rec.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if !rec.config.tty {
            return Err(EngineError::Conflict(format!(
                "container {} has no terminal (it was made without a tty)",
                rec.id
            )));
        }
        resize_pid(rec.pid, rows, cols)
    }

    /// Gives exec instance `id`'s terminal `rows` x `cols`.
    pub fn resize_exec(&mut self, id: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let e = self
            .db
            .get_exec(id)?
            .ok_or_else(|| EngineError::NoSuchExec(id.to_string()))?;
        if !e.running || e.pid <= 0 {
            return Err(EngineError::Conflict(format!("exec {id} is not running")));
        }
        resize_pid(e.pid, rows, cols)
    }
}
