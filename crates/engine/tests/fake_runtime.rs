//! The engine over a fake runtime: a container's "init" is its command
//! run as a plain host process (no namespaces, no pivot), so the engine's
//! own logic (restart policies, reconcile, `--rm`, stop and remove while a
//! monitor runs) is tested in milliseconds. The overlay root is still
//! mounted (as root), as the engine mounts it for a real runtime.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_engine::config::ContainerConfig;
use berth_engine::runtime::Runtime;
use berth_engine::{Engine, EngineError, Paths, State};
use berth_runtime::container::{ContainerError, CreateOptions};
use berth_runtime::state::Status;

/// A monitor reaps any child of its process (waitpid(-1)): one test at a
/// time, so no test's monitor takes another's exit.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Default)]
struct Fake {
    /// Container id: pid and whether it was paused.
    procs: Mutex<HashMap<String, (i32, bool)>>,
    /// Every call, in order ("create ID", "kill ID 15", ...).
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }

    fn pid(&self, id: &str) -> Option<i32> {
        self.procs.lock().unwrap().get(id).map(|p| p.0)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn gone(id: &str) -> ContainerError {
    ContainerError::Unsupported(format!("the fake runtime has no container {id}"))
}

fn alive(pid: i32) -> bool {
    berth_runtime::state::proc_stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

impl Runtime for Fake {
    fn create(&self, opts: &CreateOptions) -> Result<i32, ContainerError> {
        self.call(format!("create {}", opts.id));
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(
            &std::fs::read(opts.bundle.join("config.json")).expect("the engine wrote a config"),
        )
        .expect("a valid config");
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        let stdio = opts.stdio.expect("the engine wires stdio");
        let fd = |raw: i32| -> std::process::Stdio {
            // SAFETY: the engine keeps these fds open across create.
            let b = unsafe { BorrowedFd::borrow_raw(raw) };
            let owned: OwnedFd = b.try_clone_to_owned().expect("dup");
            owned.into()
        };
        let child = std::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(fd(stdio[0]))
            .stdout(fd(stdio[1]))
            .stderr(fd(stdio[2]))
            .spawn()
            .map_err(|e| ContainerError::Init(format!("spawn {args:?}: {e}")))?;
        let pid = child.id() as i32;
        // The monitor reaps it (it is our child).
        std::mem::forget(child);
        self.procs
            .lock()
            .unwrap()
            .insert(opts.id.clone(), (pid, false));
        Ok(pid)
    }

    fn start(&self, _root: &Path, id: &str) -> Result<(), ContainerError> {
        self.call(format!("start {id}"));
        self.pid(id).map(|_| ()).ok_or_else(|| gone(id))
    }

    fn kill(&self, _root: &Path, id: &str, signal: i32) -> Result<(), ContainerError> {
        self.call(format!("kill {id} {signal}"));
        let pid = self.pid(id).ok_or_else(|| gone(id))?;
        // SAFETY: kill(2) of a process this fake started.
        unsafe { libc::kill(pid, signal) };
        Ok(())
    }

    fn delete(&self, _root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
        self.call(format!("delete {id}"));
        if let Some((pid, _)) = self.procs.lock().unwrap().remove(id) {
            if force && alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        Ok(())
    }

    fn set_paused(&self, _root: &Path, id: &str, paused: bool) -> Result<(), ContainerError> {
        let mut procs = self.procs.lock().unwrap();
        let p = procs.get_mut(id).ok_or_else(|| gone(id))?;
        p.1 = paused;
        let sig = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: as above.
        unsafe { libc::kill(p.0, sig) };
        Ok(())
    }

    fn force_thaw(&self, root: &Path, id: &str) -> Result<(), ContainerError> {
        self.set_paused(root, id, false)
    }

    fn status(&self, _root: &Path, id: &str) -> Option<Status> {
        let (pid, paused) = *self.procs.lock().unwrap().get(id)?;
        Some(match (alive(pid), paused) {
            (false, _) => Status::Stopped,
            (true, true) => Status::Paused,
            (true, false) => Status::Running,
        })
    }

    fn oom_killed(&self, _root: &Path, _id: &str) -> bool {
        false
    }
}

struct World {
    _dir: tempfile::TempDir,
    paths: Paths,
    fake: Arc<Fake>,
    image: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(&dir.path().join("root"), &dir.path().join("run"));
        let fake = Arc::new(Fake::default());
        let mut eng = Engine::open_with(&paths, fake.clone()).unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/busybox-1.35");
        let loaded =
            berth_image::load::load(&mut eng.store, berth_image::load::Input::Path(&fixture))
                .unwrap();
        World {
            image: loaded[0].id.to_string(),
            _dir: dir,
            paths,
            fake,
        }
    }

    fn engine(&self) -> Engine {
        Engine::open_with(&self.paths, self.fake.clone()).unwrap()
    }

    /// A container running `sh -c script` on the host.
    fn create(&self, script: &str, edit: impl FnOnce(&mut ContainerConfig)) -> String {
        let mut c = ContainerConfig {
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            entrypoint: Some(vec![String::new()]),
            ..Default::default()
        };
        edit(&mut c);
        self.engine().create(&self.image, None, c).unwrap().id
    }

    /// A detached monitor for `id` on a thread of its own.
    fn serve(&self, id: &str) -> std::thread::JoinHandle<Result<i32, EngineError>> {
        let mut eng = self.engine();
        let id = id.to_string();
        std::thread::spawn(move || berth_engine::monitor::serve_detached(&mut eng, &id))
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn on_failure_restarts_up_to_its_limit_then_records_the_exit() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let id = w.create("exit 3", |c| c.restart = "on-failure:2".parse().unwrap());
    let code = w.serve(&id).join().unwrap().unwrap();
    assert_eq!(code, 3);
    let r = w.engine().get(&id).unwrap();
    assert_eq!(
        (r.state, r.exit_code, r.restart_count),
        (State::Exited, 3, 2)
    );
    let creates = w
        .fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("create"))
        .count();
    assert_eq!(
        creates,
        3,
        "one start and two restarts: {:?}",
        w.fake.calls()
    );
    // A clean exit is not a failure: no restart.
    let ok = w.create("exit 0", |c| c.restart = "on-failure".parse().unwrap());
    assert_eq!(w.serve(&ok).join().unwrap().unwrap(), 0);
    assert_eq!(w.engine().get(&ok).unwrap().restart_count, 0);
}

#[test]
fn a_stop_ends_always_and_unless_stopped_for_good() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    for policy in ["always", "unless-stopped"] {
        let id = w.create("exec sleep 30", |c| c.restart = policy.parse().unwrap());
        let monitor = w.serve(&id);
        let mut eng = w.engine();
        eventually("running", || {
            eng.get(&id).is_ok_and(|r| r.state == State::Running)
        });
        let r = eng.stop(&id, Some(5), None).unwrap();
        assert_eq!(r.state, State::Exited, "{policy}");
        // SIGTERM (the default stop signal) ended sh: 143; no restart.
        assert_eq!(monitor.join().unwrap().unwrap(), 143, "{policy}");
        let r = eng.get(&id).unwrap();
        assert_eq!((r.state, r.restart_count), (State::Exited, 0), "{policy}");
        assert!(w
            .fake
            .calls()
            .contains(&format!("kill {id} {}", libc::SIGTERM)));
    }
}

#[test]
fn rm_containers_are_gone_with_their_exit_code_kept() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let id = w.create("exit 7", |c| c.auto_remove = true);
    let mut waiter = w.engine().waiter(&id).unwrap();
    assert_eq!(w.serve(&id).join().unwrap().unwrap(), 7);
    let mut eng = w.engine();
    assert!(matches!(eng.get(&id), Err(EngineError::NoSuchContainer(_))));
    let o = waiter
        .wait(
            &mut eng,
            berth_engine::wait::WaitCondition::Removed,
            Some(Duration::from_secs(5)),
        )
        .unwrap()
        .unwrap();
    assert_eq!(o.exit_code, 7);
    assert_eq!(eng.wait_code(&id, None).unwrap(), Some(7));
    // Nothing of it is left on disk.
    assert!(!eng.layout(&id).dir.exists());
}

#[test]
fn a_dead_monitor_is_reconciled_honestly() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let mut eng = w.engine();
    // A record that says running, with a monitor that is gone and a
    // process the runtime still has: berth kills it, 137.
    let id = w.create("exec sleep 30", |_| {});
    let monitor = w.serve(&id);
    eventually("running", || {
        eng.get(&id).is_ok_and(|r| r.state == State::Running)
    });
    let mut rec = eng.db.get(&id).unwrap().unwrap();
    let pid = w.fake.pid(&id).unwrap();
    rec.monitor_pid = i32::MAX - 1;
    eng.db.update(&rec).unwrap();
    let r = eng.get(&id).unwrap();
    assert_eq!((r.state, r.exit_code), (State::Exited, 137));
    assert!(r.error.contains("monitor process died"), "{}", r.error);
    assert!(w.fake.calls().contains(&format!("delete {id}")));
    eventually("the process killed", || !alive(pid));
    let _ = monitor.join();
    // And one whose process is gone too: its exit code was lost, 255.
    let id = w.create("exit 0", |_| {});
    let mut rec = eng.db.get(&id).unwrap().unwrap();
    rec.state = State::Running;
    rec.monitor_pid = i32::MAX - 1;
    eng.db.update(&rec).unwrap();
    let r = eng.get(&id).unwrap();
    assert_eq!((r.state, r.exit_code), (State::Exited, 255));
}

/// A record read while the container ran, taken up after its monitor
/// recorded the exit (or removed a `--rm` container) and ended: it is not
/// taken for a monitor that died (once, twenty concurrent `docker run
/// --rm` saw exit code 255 this way: the reconcile overwrote the code the
/// monitor had kept).
#[test]
fn a_stale_record_does_not_overwrite_the_exit_its_monitor_recorded() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let mut eng = w.engine();
    let dead_monitor = |eng: &mut Engine, id: &str| {
        let mut rec = eng.db.get(id).unwrap().unwrap();
        rec.state = State::Running;
        rec.monitor_pid = i32::MAX - 1;
        eng.db.update(&rec).unwrap();
        eng.db.get(id).unwrap().unwrap()
    };
    // The monitor recorded the exit after the record was read.
    let id = w.create("exit 0", |_| {});
    let stale = dead_monitor(&mut eng, &id);
    let mut done = stale.clone();
    done.state = State::Exited;
    done.exit_code = 3;
    done.monitor_pid = 0;
    eng.db.update(&done).unwrap();
    let r = eng.reconcile(stale).unwrap();
    assert_eq!((r.state, r.exit_code), (State::Exited, 3));
    assert!(r.error.is_empty(), "{}", r.error);
    // `--rm`: the monitor kept the code and removed the container.
    let id = w.create("exit 0", |c| c.auto_remove = true);
    let stale = dead_monitor(&mut eng, &id);
    let exit = eng.paths.runroot.join("exits").join(&id);
    std::fs::create_dir_all(exit.parent().unwrap()).unwrap();
    std::fs::write(&exit, "0").unwrap();
    eng.db.delete(&id).unwrap();
    assert!(matches!(
        eng.reconcile(stale),
        Err(EngineError::NoSuchContainer(_))
    ));
    assert_eq!(std::fs::read_to_string(&exit).unwrap(), "0");
    assert_eq!(eng.wait_code(&id, None).unwrap(), Some(0));
    // While one caller takes a container over, it is that container's
    // monitor: another caller reading the record then leaves it alone
    // (it once took it over a second time, with a second die event).
    let id = w.create("exit 0", |_| {});
    let stale = dead_monitor(&mut eng, &id);
    let me = std::process::id() as i32;
    let start = berth_runtime::state::proc_stat(me).unwrap().1;
    assert!(eng
        .db
        .claim_orphan(&id, (stale.monitor_pid, stale.monitor_start), (me, start))
        .unwrap());
    let now = eng.db.get(&id).unwrap().unwrap();
    let r = eng.reconcile(now).unwrap();
    assert_eq!((r.state, r.monitor_pid), (State::Running, me));
    // The one that claimed it gives up: the next caller takes over.
    assert!(eng.db.claim_orphan(&id, (me, start), (0, 0)).unwrap());
    let r = eng.get(&id).unwrap();
    assert_eq!(
        (r.state, r.exit_code, r.monitor_pid),
        (State::Exited, 255, 0)
    );
}

#[test]
fn a_forced_remove_while_the_monitor_restarts_leaves_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let id = w.create("sleep 0.05; exit 1", |c| {
        c.restart = "always".parse().unwrap()
    });
    let monitor = w.serve(&id);
    let mut eng = w.engine();
    eventually("restarted once", || {
        eng.get(&id).is_ok_and(|r| r.restart_count >= 1)
    });
    eng.remove(&id, true, true).unwrap();
    // The monitor ends (no restart of a removed container) without error.
    monitor.join().unwrap().unwrap();
    assert!(matches!(eng.get(&id), Err(EngineError::NoSuchContainer(_))));
    assert!(!eng.layout(&id).dir.exists(), "its directory stayed");
    assert!(w.fake.pid(&id).is_none(), "its runtime state stayed");
    // Removing a running container needs force.
    let id = w.create("exec sleep 30", |_| {});
    let monitor = w.serve(&id);
    eventually("running", || {
        eng.get(&id).is_ok_and(|r| r.state == State::Running)
    });
    assert!(matches!(
        eng.remove(&id, false, false),
        Err(EngineError::Conflict(_))
    ));
    eng.remove(&id, true, false).unwrap();
    monitor.join().unwrap().unwrap();
}

/// A container its policy restarts is never recorded as exited between
/// the exit and the restart: a `not-running` wait woken by the die event
/// once returned there (with one restart of two done).
#[test]
fn a_restarting_container_is_never_exited_between_its_runs() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    let id = w.create("exit 5", |c| c.restart = "on-failure:2".parse().unwrap());
    let mut watcher = w.engine();
    let follower_id = id.clone();
    let monitor = w.serve(&id);
    // Every state a die event leaves behind, until the last exit.
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    let (_, mut follower) = berth_engine::events::read(&w.paths.runroot);
    loop {
        for e in follower.poll() {
            if e.actor.id == follower_id && e.action == "die" {
                let r = watcher.get(&follower_id).unwrap();
                seen.push((r.state, r.restart_count));
            }
        }
        if seen.len() == 3 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(monitor.join().unwrap().unwrap(), 5);
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (state, count) in &seen[..2] {
        assert_eq!(*state, State::Restarting, "after run {count}: {seen:?}");
    }
    let last = watcher.get(&id).unwrap();
    assert_eq!((last.state, last.restart_count), (State::Exited, 2));
}
