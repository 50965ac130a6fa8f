//! Data-parallel training over MPI (`cargo test --release --features mpi --test
//! mpi_data_parallel`; Open MPI's mpirun on the PATH). Without a launcher around it, this
//! program is the launcher: it starts itself and `wgformer train vit` under `mpirun -np 2` and
//! checks what comes back. Started by mpirun, it is a rank of the library-level cases.
//!
//! - equality: 2 ranks at half the batch each give one process's losses and parameters (the
//!   tolerance of tests/common/data_parallel.rs), and the ranks hold the same bits;
//! - a mismatched configuration is refused on every rank;
//! - `wgformer train vit` under mpirun prints the same losses as one process, and a run
//!   saved by 2 ranks resumes in 1;
//! - a rank that crashes or fails mid-run ends the job within seconds with a non-zero exit and
//!   its message, and the last checkpoint is intact.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wgformer::dist::collective::{check_same, fingerprint, Collective};

/// A named check run from the launcher.
type Case = (&'static str, fn(&Path));

fn main() {
    if wgformer::dist::mpi::launched() {
        let mode = std::env::args().nth(1).unwrap_or_default();
        let dir = PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| ".".into()));
        rank_main(&mode, &dir);
        return;
    }
    let tmp = std::env::temp_dir().join(format!("wgformer-mpi-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temporary directory");
    let cases: [Case; 6] = [
        ("library ranks match one process", library_equality),
        ("a mismatched configuration is refused", mismatch),
        ("train vit under mpirun matches one process, and resumes in one", cli_equality_and_resume),
        ("train translate under mpirun matches one process", cli_translate),
        ("a crashed rank ends the job", |d| fault(d, "crash:6@1", "rank 1 crashes")),
        ("a failing rank ends the job", |d| fault(d, "oom:6@1", "error on rank 1 of 2")),
    ];
    for (name, case) in cases {
        let start = Instant::now();
        eprintln!("test {name} ...");
        case(&tmp);
        eprintln!("test {name} ... ok ({:.1} s)", start.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("mpi_data_parallel: {} passed", cases.len());
}

/// `mpirun -np 2 program args..` (root and 2 ranks on fewer cores allowed), killed after
/// `limit`.
fn mpirun(program: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", "2"]).arg(program).args(args);
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd.env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    run(cmd, env, limit)
}

fn run(mut cmd: Command, env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    cmd.envs(env.iter().copied());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("could not start {cmd:?}: {e} (install Open MPI: apt-get install openmpi-bin libopenmpi-dev)")
    });
    // Read the pipes on threads so that a chatty child cannot block on a full pipe.
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || read_all(&mut out));
    let err_reader = std::thread::spawn(move || read_all(&mut err));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} still ran after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let output = Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() };
    (output, elapsed)
}

fn read_all(r: &mut impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout)
}

fn this_program() -> PathBuf {
    std::env::current_exe().expect("the test's own path")
}

/// What rank `r` wrote to its report file (the ranks' merged stderr can interleave lines).
fn report(dir: &Path, mode: &str, r: usize) -> String {
    std::fs::read_to_string(dir.join(format!("{mode}-rank-{r}.txt"))).unwrap_or_default()
}

fn library_equality(tmp: &Path) {
    let (o, _) = mpirun(&this_program(), &["equality", tmp.to_str().unwrap()], &[], Duration::from_secs(300));
    let t = text(&o);
    assert!(o.status.success(), "the ranks failed:\n{t}");
    for r in 0..2 {
        assert_eq!(report(tmp, "equality", r), "equality ok", "rank {r} did not finish:\n{t}");
    }
}

fn mismatch(tmp: &Path) {
    let (o, _) = mpirun(&this_program(), &["mismatch", tmp.to_str().unwrap()], &[], Duration::from_secs(60));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for r in 0..2 {
        let got = report(tmp, "mismatch", r);
        assert!(got.starts_with("refused: data-parallel training: rank 1 has a different"), "rank {r}: {got:?}\n{t}");
    }
}

const VIT_ARGS: [&str; 6] = ["--train-images", "128", "--test-images", "50", "--batch", "32"];

fn wgformer_vit(out: &Path, epochs: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["train", "vit", "--out", out.to_str().unwrap(), "--epochs", epochs];
    args.extend(VIT_ARGS);
    args.extend(extra);
    args.into_iter().map(String::from).collect()
}

/// The train losses of every epoch in a checkpoint's trainer_state.json.
fn epoch_losses(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).expect("trainer_state.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    v["history"].as_array().expect("history").iter().map(|r| r["train_loss"].as_f64().unwrap()).collect()
}

fn cli_equality_and_resume(tmp: &Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wgformer"));
    let limit = Duration::from_secs(300);
    let (one, two, split) = (tmp.join("one"), tmp.join("two"), tmp.join("split"));
    let mut cmd = Command::new(&bin);
    cmd.args(wgformer_vit(&one, "2", &[]));
    let (o, _) = run(cmd, &[], limit);
    assert!(o.status.success(), "{}", text(&o));
    let args = wgformer_vit(&two, "2", &[]);
    let (o, _) = mpirun(&bin, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[], limit);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("on 2 ranks of 16 images"), "{t}");
    let (a, b) = (epoch_losses(&one), epoch_losses(&two));
    eprintln!("train losses: one process {a:?}, 2 ranks {b:?}");
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "one process {a:?}, 2 ranks {b:?}");
    }
    // One epoch on 2 ranks, the second in one process.
    let args = wgformer_vit(&split, "2", &["--stop-after", "1"]);
    let (o, _) = mpirun(&bin, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[], limit);
    assert!(o.status.success(), "{}", text(&o));
    let mut cmd = Command::new(&bin);
    cmd.args(["train", "vit", "--resume", split.to_str().unwrap(), "--out", split.to_str().unwrap()]);
    cmd.args(&VIT_ARGS[..4]);
    let (o, _) = run(cmd, &[], limit);
    assert!(o.status.success(), "{}", text(&o));
    let c = epoch_losses(&split);
    eprintln!("2 ranks then 1 process: {c:?}");
    assert_eq!(c.len(), 2);
    for (x, y) in a.iter().zip(&c) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "one process {a:?}, resumed {c:?}");
    }
}

/// A small translation run (2 passes over 400 dictionary pairs) on 2 ranks trains as one
/// process does: each rank takes its share of every batch's rows, weighted by its target
/// tokens, and rank 0 validates and plans for both.
fn cli_translate(tmp: &Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wgformer"));
    let args = |out: &Path| -> Vec<String> {
        let mut a = vec!["train", "translate", "--data", "ding", "--train-pairs", "400", "--epochs", "2"];
        a.extend(["--size", "tiny", "--vocab", "300", "--valid-pairs", "5", "--test-pairs", "5", "--batch", "512"]);
        a.extend(["--out", out.to_str().unwrap()]);
        a.into_iter().map(String::from).collect()
    };
    let (one, two) = (tmp.join("translate-one"), tmp.join("translate-two"));
    let mut cmd = Command::new(&bin);
    cmd.args(args(&one));
    let (o, _) = run(cmd, &[], Duration::from_secs(300));
    assert!(o.status.success(), "{}", text(&o));
    let a2 = args(&two);
    let (o, _) = mpirun(&bin, &a2.iter().map(String::as_str).collect::<Vec<_>>(), &[], Duration::from_secs(300));
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (epoch_losses(&one), epoch_losses(&two));
    eprintln!("translate train losses: one process {a:?}, 2 ranks {b:?}");
    assert_eq!((a.len(), b.len()), (2, 2));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "one process {a:?}, 2 ranks {b:?}");
    }
}

/// A fault on rank 1 at step 6 (the second epoch of 4 steps): the job ends non-zero within
/// seconds, says why, and the checkpoint of epoch 1 is intact.
fn fault(tmp: &Path, spec: &str, message: &str) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wgformer"));
    let out = tmp.join(format!("fault-{}", spec.replace([':', '@'], "-")));
    let mut args = wgformer_vit(&out, "3", &[]);
    args.extend(["--inject-fault".to_string(), spec.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, took) = mpirun(&bin, &args, &[], Duration::from_secs(120));
    let t = text(&o);
    assert!(!o.status.success(), "the job succeeded despite {spec}:\n{t}");
    assert!(t.contains(message), "no {message:?} in:\n{t}");
    eprintln!("{spec}: the job ended in {:.1} s with {}", took.as_secs_f64(), o.status);
    assert_eq!(epoch_losses(&out).len(), 1, "the checkpoint holds epoch 1");
    let tensors = wgformer::util::io::read_safetensors(&out.join("model.safetensors")).expect("an intact checkpoint");
    assert!(!tensors.is_empty());
}

/// One rank of the library-level cases.
fn rank_main(mode: &str, dir: &Path) {
    let group: Arc<dyn Collective> = Arc::new(wgformer::dist::mpi::MpiGroup::init().expect("MPI"));
    let rank = group.rank();
    match mode {
        "equality" => {
            let gpu = wgformer::Gpu::new().expect("a GPU");
            use common::data_parallel::{assert_matches, train_rank, train_whole, transformer, vit};
            for s in [vit(2), transformer(2)] {
                let whole = train_whole(&gpu, &s);
                let run = train_rank(&gpu, &s, group.clone());
                assert_matches(s.name, &whole, &run, false);
                // The same bits on every rank after every step, and the same losses.
                let mut bits: Vec<u8> = run.fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect();
                bits.extend(run.losses.iter().flat_map(|x| x.to_le_bytes()));
                check_same(group.as_ref(), "parameters after a step", fingerprint(&bits)).expect("same bits");
                eprintln!("rank {rank}: {}: {:?}", s.name, run.comm);
            }
            std::fs::write(dir.join(format!("equality-rank-{rank}.txt")), "equality ok").expect("report");
        }
        "mismatch" => {
            let e = check_same(group.as_ref(), "configuration", rank as u64).expect_err("refused");
            std::fs::write(dir.join(format!("mismatch-rank-{rank}.txt")), format!("refused: {e}")).expect("report");
        }
        other => panic!("unknown mode {other:?}"),
    }
}
