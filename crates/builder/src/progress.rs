//! What a build reports while it works: events on a sink (`Progress`)
//! the front end renders. The CLI prints docker's classic text (step
//! lines in bold on a terminal); the daemon wraps the same text in the
//! API's `{"stream": ...}` lines. `-q` is the `Quiet` sink.

use std::borrow::Cow;
use std::time::Duration;

/// One thing a build did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// An instruction starts: `counter` is `[2/5]`, `stage` the stage's
    /// name (or `stage-N`), `instruction` the line as written.
    Step {
        counter: &'a str,
        stage: &'a str,
        instruction: &'a str,
    },
    /// The step's result came from the build cache.
    Cached,
    /// A RUN or COPY step ran, in this long.
    Done(Duration),
    /// What a RUN step's process wrote, as it wrote it.
    Output(&'a [u8]),
}

impl Event<'_> {
    /// docker's classic builder text for the event, newline included
    /// (`Output` is passed through as written).
    pub fn text(&self) -> Cow<'_, [u8]> {
        match self {
            Event::Step {
                counter,
                stage,
                instruction,
            } => Cow::Owned(format!("{counter} [{stage}] {instruction}\n").into_bytes()),
            Event::Cached => Cow::Borrowed(b" ---> CACHED\n"),
            Event::Done(d) => {
                Cow::Owned(format!(" ---> done in {:.2}s\n", d.as_secs_f64()).into_bytes())
            }
            Event::Output(b) => Cow::Borrowed(b),
        }
    }
}

/// Where a build reports. Stages that run at once report from several
/// threads.
pub trait Progress: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// `-q`: nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: &Event<'_>) {}
}

impl<F: Fn(&Event<'_>) + Send + Sync> Progress for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text() {
        let step = Event::Step {
            counter: "[2/3]",
            stage: "stage-0",
            instruction: "RUN echo hi",
        };
        assert_eq!(&*step.text(), b"[2/3] [stage-0] RUN echo hi\n");
        assert_eq!(&*Event::Cached.text(), b" ---> CACHED\n");
        assert_eq!(
            &*Event::Done(Duration::from_millis(1234)).text(),
            b" ---> done in 1.23s\n"
        );
        assert_eq!(&*Event::Output(b"partial").text(), b"partial");
    }
}
