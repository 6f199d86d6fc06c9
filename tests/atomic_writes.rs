//! Parameter directories under attack: `osq calibrate` killed (SIGKILL) at random moments while
//! it replaces an existing directory, and `osq run` processes reading while a directory is
//! rewritten again and again. The directory must always load and give the old or the new
//! answers; no reader may die of a signal. `OSQ_REWRITE_RUNS` sets the reader count (200).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{osq, s, setup, text};

fn embed(dir: &Path) -> Vec<f32> {
    osq::Model::load_with(
        dir,
        osq::ModelOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{} does not load: {e}", dir.display()))
    .embed(osq_model::testing::SENTENCES)
    .unwrap()
    .into_vec()
}

fn calibrate_args<'a>(
    model: &'a Path,
    data: &'a Path,
    out: &'a Path,
    bits: &'a str,
) -> Vec<&'a str> {
    vec![
        "calibrate",
        "--model",
        s(model),
        "--data",
        s(data),
        "--bits",
        bits,
        "-o",
        s(out),
        "--quiet",
        "--threads",
        "1",
    ]
}

#[test]
fn sigkill_during_calibrate_leaves_old_or_new_parameters() {
    let (_tmp, model, data) = setup("atomic-kill");
    let dir = model.parent().unwrap().join("params");
    let o = osq(&calibrate_args(&model, &data, &dir, "w8a8"));
    assert!(o.status.success(), "{}", text(&o));
    let old = embed(&dir);
    // the new parameters, written elsewhere once, to know what "new" is
    let other = model.parent().unwrap().join("params-new");
    let o = osq(&calibrate_args(&model, &data, &other, "w4a8"));
    assert!(o.status.success(), "{}", text(&o));
    let new = embed(&other);
    assert_ne!(old, new);
    // how long a full run takes, to spread the kills over it
    let t0 = Instant::now();
    let o = osq(&calibrate_args(&model, &data, &dir, "w8a8"));
    assert!(o.status.success());
    let full = t0.elapsed();
    let mut rng = osq_model::rng::SplitMix64::new(20);
    let (mut saw_old, mut saw_new, mut killed) = (0, 0, 0);
    for i in 0..20 {
        // alternate what is on disk before the kill, so that both directions are exercised
        let (before, target) = if i % 2 == 0 {
            ("w8a8", "w4a8")
        } else {
            ("w4a8", "w8a8")
        };
        let o = osq(&calibrate_args(&model, &data, &dir, before));
        assert!(o.status.success());
        let mut child = Command::new(env!("CARGO_BIN_EXE_osq"))
            .args(calibrate_args(&model, &data, &dir, target))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = full.mul_f64(rng.uniform() * 1.2);
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let got = embed(&dir);
        let (b, t) = if i % 2 == 0 {
            (&old, &new)
        } else {
            (&new, &old)
        };
        if &got == b {
            saw_old += 1;
        } else if &got == t {
            saw_new += 1;
        } else {
            panic!(
                "kill {i} at {at:?}: the directory holds neither the old nor the new parameters"
            );
        }
    }
    println!("20 kills over a {full:?} calibration: {killed} killed mid-run, {saw_old} left the old parameters, {saw_new} the new");
    // no temporary sibling survives the next write
    let o = osq(&calibrate_args(&model, &data, &dir, "w8a8"));
    assert!(o.status.success());
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".params.tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn readers_during_rewrites_never_see_a_mix_or_a_signal() {
    let (_tmp, model, data) = setup("atomic-read");
    let dir = model.parent().unwrap().join("params");
    for bits in ["w4a8", "w8a8"] {
        let o = osq(&calibrate_args(&model, &data, &dir, bits));
        assert!(o.status.success(), "{}", text(&o));
    }
    let answer = |dir: &Path| -> String {
        let o = osq(&[
            "run",
            "--params",
            s(dir),
            "--json",
            "--threads",
            "1",
            "the cat sat on the mat.",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let a8 = answer(&dir);
    let o = osq(&calibrate_args(&model, &data, &dir, "w4a8"));
    assert!(o.status.success());
    let a4 = answer(&dir);
    assert_ne!(a8, a4);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, model, data, dir) = (stop.clone(), model.clone(), data.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let bits = if n % 2 == 0 { "w8a8" } else { "w4a8" };
                let o = osq(&calibrate_args(&model, &data, &dir, bits));
                assert!(o.status.success(), "{}", text(&o));
                n += 1;
            }
            n
        })
    };
    let runs: usize = std::env::var("OSQ_REWRITE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (mut signals, mut mixed, mut errors) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    for _ in 0..runs {
        assert!(
            Instant::now() < deadline,
            "readers took more than 10 minutes"
        );
        let o = osq(&[
            "run",
            "--params",
            s(&dir),
            "--json",
            "--threads",
            "1",
            "the cat sat on the mat.",
        ]);
        if o.status.signal().is_some() {
            signals += 1;
        } else if !o.status.success() {
            errors += 1;
            eprintln!("reader error: {}", text(&o));
        } else {
            let out = String::from_utf8(o.stdout).unwrap();
            if out != a8 && out != a4 {
                mixed += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rewrites = writer.join().unwrap();
    println!("{runs} readers during {rewrites} rewrites: {signals} signals, {mixed} mixed answers, {errors} errors");
    assert_eq!(signals, 0);
    assert_eq!(mixed, 0);
    assert_eq!(errors, 0);
}
