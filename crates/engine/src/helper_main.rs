//! What a helper process runs: the berth binary started as one of the
//! engine's helpers (`helper::spawn`) comes here from its `main`, and goes
//! to the role's body; nothing of the front end runs.

use std::ffi::{OsStr, OsString};

use crate::Paths;

/// For a front end's `main`, before anything else: when this process was
/// started as a helper, runs it and returns its exit status.
pub fn dispatch() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(crate::helper::FLAG)) {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    Some(run(&rest))
}

fn run(args: &[OsString]) -> i32 {
    let (Some(role), Some(root), Some(runroot)) = (args.first(), args.get(1), args.get(2)) else {
        return 2;
    };
    let paths = Paths::new(root.as_ref(), runroot.as_ref());
    let rest = &args[3..];
    let arg = |i: usize| rest.get(i).and_then(|a| a.to_str()).unwrap_or_default();
    let mut reporter = crate::helper::take_stdout();
    match role.to_str().unwrap_or_default() {
        "monitor" => {
            crate::helper::detach();
            let await_clients = arg(1).parse().unwrap_or(0);
            crate::monitor::monitor_main(&paths, arg(0), await_clients, &mut reporter)
        }
        "exec" => {
            crate::helper::detach();
            crate::exec::keeper_main(&paths, &mut reporter)
        }
        "health" => crate::health::checker_main(&paths, arg(0), arg(1)),
        "cp" => crate::cp::helper_main(&mut reporter),
        "step" => crate::step::helper_main(&paths, arg(0), arg(1), &mut reporter),
        _ => 2,
    }
}
