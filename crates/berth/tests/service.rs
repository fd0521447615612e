//! The service and engine as the daemon will drive them: in-process, from
//! a multi-threaded caller (this test binary), with the berth binary as
//! the helper program (monitors, exec keepers).

mod util;

use std::time::{Duration, Instant};

use berth_engine::wait::WaitCondition;
use berth_engine::{Engine, Paths, State};
use util::*;

fn paths(b: &Berth) -> Paths {
    berth_engine::helper::set_program(BERTH.into());
    Paths::new(&b.root, &b.root.with_file_name("run"))
}

fn engine(b: &Berth) -> Engine {
    Engine::open(&paths(b)).expect("the engine opens")
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn zombie_or_gone(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

#[test]
fn a_threaded_caller_starts_containers_through_helper_monitors() {
    let b = Berth::with_busybox();
    let ids: Vec<String> = (0..4)
        .map(|i| {
            b.ok(&[
                "create",
                "--name",
                &format!("c{i}"),
                "busybox:1.35",
                "sleep",
                "30",
            ])
            .trim()
            .to_string()
        })
        .collect();
    let p = paths(&b);
    // Four threads start at once, as a daemon's request handlers would.
    std::thread::scope(|s| {
        for id in &ids {
            let p = p.clone();
            s.spawn(move || {
                let eng = Engine::open(&p).unwrap();
                berth_service::containers::start(eng, id).expect("started");
            });
        }
    });
    let mut eng = engine(&b);
    let monitors: Vec<i32> = ids
        .iter()
        .map(|id| {
            let r = eng.get(id).unwrap();
            assert_eq!(r.state, State::Running, "{id}");
            // The monitor is its own process, not this one.
            assert_ne!(r.monitor_pid, std::process::id() as i32);
            assert!(r.monitor_pid > 0);
            r.monitor_pid
        })
        .collect();
    // A second start of a running container is a no-op, as docker's.
    berth_service::containers::start(engine(&b), &ids[0]).expect("no-op");
    for id in &ids {
        eng.stop(id, Some(0), None).unwrap();
    }
    // Each monitor, a child of this process, is reaped: no zombie stays.
    for pid in monitors {
        eventually(&format!("monitor {pid} reaped"), || {
            zombie_or_gone(pid).is_none()
        });
    }
}

#[test]
fn a_failed_start_crosses_the_helper_with_its_exit_code() {
    let b = Berth::with_busybox();
    let id = b.ok(&["create", "busybox:1.35", "/no/such/program"]);
    let err = berth_service::containers::start(engine(&b), id.trim()).unwrap_err();
    assert_eq!(
        err.kind(),
        berth_service::ErrorKind::CommandNotFound,
        "{err}"
    );
    assert_eq!(err.kind().run_exit_code(), 127);
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    let id = b.ok(&["create", "busybox:1.35", "/etc/hostname"]);
    let err = berth_service::containers::start(engine(&b), id.trim()).unwrap_err();
    assert_eq!(err.kind().run_exit_code(), 126, "{err}");
}

#[test]
fn wait_conditions_are_dockers_and_race_free() {
    let b = Berth::with_busybox();
    let mut eng = engine(&b);

    // next-exit, subscribed before the start: an exit long before the wait
    // is called is still the one it returns.
    let quick = b.ok(&["create", "busybox:1.35", "sh", "-c", "exit 3"]);
    let quick = quick.trim();
    let mut w = eng.waiter(quick).unwrap();
    berth_service::containers::start(engine(&b), quick).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = w
        .wait(
            &mut eng,
            WaitCondition::NextExit,
            Some(Duration::from_secs(20)),
        )
        .unwrap()
        .expect("the exit was seen");
    assert_eq!(o.exit_code, 3);
    // not-running on an exited container: at once, its code.
    assert_eq!(
        eng.wait(quick, WaitCondition::NotRunning, Some(Duration::ZERO))
            .unwrap(),
        Some(3)
    );
    // next-exit on an exited container that nobody starts: still waiting.
    assert_eq!(
        eng.wait(
            quick,
            WaitCondition::NextExit,
            Some(Duration::from_millis(300))
        )
        .unwrap(),
        None
    );

    // next-exit returns at an exit that a restart follows; not-running
    // only once the policy gives up.
    let flaky = b.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "busybox:1.35",
        "sh",
        "-c",
        "sleep 0.3; exit 4",
    ]);
    let flaky = flaky.trim();
    assert_eq!(
        eng.wait(
            flaky,
            WaitCondition::NextExit,
            Some(Duration::from_secs(20))
        )
        .unwrap(),
        Some(4)
    );
    assert!(
        eng.get(flaky).unwrap().restart_count < 2,
        "next-exit waited for more than one exit"
    );
    assert_eq!(
        eng.wait(
            flaky,
            WaitCondition::NotRunning,
            Some(Duration::from_secs(30))
        )
        .unwrap(),
        Some(4)
    );
    let r = eng.get(flaky).unwrap();
    assert_eq!((r.state, r.restart_count), (State::Exited, 2));

    // removed: until someone removes it, then its last exit code.
    let p = paths(&b);
    let waiter = std::thread::spawn({
        let quick = quick.to_string();
        move || {
            let mut eng = Engine::open(&p).unwrap();
            eng.wait(
                &quick,
                WaitCondition::Removed,
                Some(Duration::from_secs(20)),
            )
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "removed returned before the removal");
    b.ok(&["rm", quick]);
    assert_eq!(waiter.join().unwrap().unwrap(), Some(3));

    // A --rm container: every condition is met by its removal.
    let gone = b.ok(&[
        "run",
        "-d",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "sleep 0.3; exit 5",
    ]);
    assert_eq!(
        eng.wait(
            gone.trim(),
            WaitCondition::Removed,
            Some(Duration::from_secs(20))
        )
        .unwrap(),
        Some(5)
    );
    // A container that does not exist is an error, not a wait.
    assert!(matches!(
        eng.wait("nope", WaitCondition::NotRunning, None),
        Err(berth_engine::EngineError::NoSuchContainer(_))
    ));
    let w = berth_service::containers::wait(&mut eng, flaky, WaitCondition::NotRunning).unwrap();
    assert_eq!(
        serde_json::to_value(&w).unwrap(),
        serde_json::json!({"StatusCode": 4})
    );
}

#[test]
fn exec_exit_codes_are_recorded() {
    let b = Berth::with_busybox();
    let id = b.ok(&["run", "-d", "busybox:1.35", "sleep", "30"]);
    let id = id.trim();
    b.ok(&["exec", "-d", id, "sh", "-c", "sleep 0.2; exit 7"]);
    let fg = b.run(&["exec", id, "sh", "-c", "exit 5"]);
    assert_eq!(fg.code, Some(5));
    let missing = b.run(&["exec", id, "/no/such/program"]);
    assert_eq!(missing.code, Some(127));
    let eng = engine(&b);
    let execs = || -> Vec<berth_engine::db::ExecRecord> {
        eng.db
            .execs_of(id)
            .unwrap()
            .iter()
            .map(|e| eng.db.get_exec(e).unwrap().unwrap())
            .collect()
    };
    eventually("the detached exec's exit recorded", || {
        execs().first().is_some_and(|e| !e.running)
    });
    let codes: Vec<Option<i32>> = execs().iter().map(|e| e.exit_code).collect();
    assert_eq!(codes, [Some(7), Some(5), Some(127)]);
    assert!(execs()[0].pid > 0);
    b.ok(&["rm", "-f", id]);
    assert!(
        eng.db.execs_of(id).unwrap().is_empty(),
        "execs outlived their container"
    );
}

/// `system df` counts what each kind of object takes, in the Engine
/// API's `/system/df` shape: a container's own layer, a volume's data and
/// who uses it, and the build cache apart from the images.
#[test]
fn system_df_counts_containers_volumes_and_the_build_cache() {
    let b = Berth::with_busybox();
    let images_size = |eng: &mut Engine| berth_service::system::df(eng).unwrap().rows()[0].size;
    let busybox = images_size(&mut engine(&b));
    let ctx = b.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:1.35\nRUN head -c 300000 /dev/zero > /cached\n",
    )
    .unwrap();
    b.ok(&["build", "-q", "-t", "df-app", ctx.to_str().unwrap()]);
    b.ok(&["rmi", "df-app"]);
    let id = b.ok(&[
        "run",
        "-d",
        "-v",
        "dfvol:/data",
        "busybox:1.35",
        "sh",
        "-c",
        "head -c 200000 /dev/zero > /data/v; head -c 100000 /dev/zero > /rw; sleep 30",
    ]);
    let id = id.trim();
    let mut eng = engine(&b);
    eventually("the container wrote its files", || {
        berth_service::system::df(&mut eng)
            .unwrap()
            .containers
            .iter()
            .any(|c| c.size_rw.unwrap_or(0) >= 100_000)
    });
    eventually("the volume holds its file", || {
        berth_service::system::df(&mut eng).unwrap().volumes[0]
            .usage_data
            .as_ref()
            .is_some_and(|u| u.size >= 200_000)
    });
    let df = berth_service::system::df(&mut eng).unwrap();
    let v = serde_json::to_value(&df).unwrap();
    assert_eq!(v["Containers"][0]["Id"], id, "{v}");
    assert!(
        v["Containers"][0]["SizeRw"].as_u64().unwrap() < 200_000,
        "{v}"
    );
    assert_eq!(v["Volumes"][0]["Name"], "dfvol", "{v}");
    assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 1, "{v}");
    assert_eq!(v["Images"][0]["Containers"], 1, "{v}");
    let cached: u64 = df.build_cache.iter().map(|r| r.size).sum();
    assert!(cached >= 300_000, "the RUN step's layer: {v}");
    assert!(v["LayersSize"].as_u64().unwrap() > 0, "{v}");

    let rows = df.rows();
    let row = |kind: &str| rows.iter().find(|r| r.kind == kind).unwrap().clone();
    assert_eq!((row("Containers").total, row("Containers").active), (1, 1));
    assert_eq!(
        row("Containers").reclaimable,
        0,
        "a running container's layer"
    );
    assert_eq!(
        (row("Local Volumes").total, row("Local Volumes").active),
        (1, 1)
    );
    assert!(row("Build Cache").size >= 300_000, "{rows:?}");
    assert_eq!(
        row("Images").size,
        busybox,
        "the cache's layer is not an image's: {rows:?}"
    );

    let table = b.ok(&["system", "df"]);
    for kind in ["Images", "Containers", "Local Volumes", "Build Cache"] {
        assert!(table.lines().any(|l| l.starts_with(kind)), "{table}");
    }
    b.ok(&["rm", "-f", id]);
    let df = berth_service::system::df(&mut engine(&b)).unwrap();
    assert!(df.containers.is_empty());
    let vol = df
        .rows()
        .into_iter()
        .find(|r| r.kind == "Local Volumes")
        .unwrap();
    assert_eq!(vol.active, 0);
    assert_eq!(vol.reclaimable, vol.size, "an unused volume is reclaimable");
    b.ok(&["builder", "prune", "-f"]);
    let df = berth_service::system::df(&mut engine(&b)).unwrap();
    assert!(df.build_cache.is_empty());
}
