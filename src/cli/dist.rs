//! Running under `mpirun`: the process's rank in the job, the adapter it takes, and what a
//! failing rank does (print its message, then end every rank through MPI_Abort).

use std::sync::Arc;
#[cfg(feature = "mpi")]
use std::sync::{OnceLock, Weak};
use wgformer::dist::collective::Collective;
use wgformer::{Error, Gpu, GpuOptions, Result};

/// This process's place in a data-parallel job (a job of one without MPI).
#[derive(Clone, Default)]
pub struct Dist {
    /// The job's ranks, when there are several.
    pub group: Option<Arc<dyn Collective>>,
    /// This rank among the ranks of its machine.
    pub local_rank: usize,
    /// A fault its trainer injects (the hidden `--inject-fault`, for the failure tests).
    pub faults: Option<wgformer::runtime::fault::FaultPlan>,
}

/// The group a panicking rank aborts (set once, by [`init`]; weak, so that dropping the
/// last `Dist` still finalizes MPI).
#[cfg(feature = "mpi")]
static ABORT_GROUP: OnceLock<Weak<dyn Collective>> = OnceLock::new();

/// The job this process belongs to: MPI's ranks when started by an MPI launcher with more than
/// one rank (and built with feature `mpi`), otherwise a job of one.
pub fn init() -> Result<Dist> {
    #[cfg(feature = "mpi")]
    if wgformer::dist::mpi::launched() {
        let group = wgformer::dist::mpi::MpiGroup::init()?;
        let local_rank = group.local_rank();
        if group.size() < 2 {
            return Ok(Dist { group: None, local_rank, faults: None });
        }
        let group: Arc<dyn Collective> = Arc::new(group);
        let _ = ABORT_GROUP.set(Arc::downgrade(&group));
        // A panicking rank would leave the others waiting in a collective: end the job.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(g) = ABORT_GROUP.get().and_then(Weak::upgrade) {
                g.abort(101);
            }
        }));
        return Ok(Dist { group: Some(group), local_rank, faults: None });
    }
    #[cfg(not(feature = "mpi"))]
    if let Some(n) = launcher_size().filter(|&n| n > 1) {
        return Err(Error::Config(format!(
            "started by an MPI launcher with {n} ranks, but this wgformer was built without MPI: \
             build it with `cargo build --release --features mpi`"
        )));
    }
    Ok(Dist::default())
}

/// The job's size as the launcher's environment gives it.
#[cfg(not(feature = "mpi"))]
fn launcher_size() -> Option<usize> {
    wgformer::settings::mpi_launcher_size()
}

impl Dist {
    pub fn rank(&self) -> usize {
        self.group.as_ref().map_or(0, |g| g.rank())
    }

    /// The ranks as the library's training runs take them.
    pub fn ranks(&self) -> wgformer::train::Ranks {
        wgformer::train::Ranks { group: self.group.clone(), faults: self.faults }
    }

    /// Rank 0 prints progress, evaluates and writes checkpoints; the others only train.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The GPU of this rank: `WGFORMER_ADAPTER` / `WGFORMER_BACKEND` when set, otherwise the
    /// machine's adapters of the best kind in turn by local rank.
    pub fn gpu(&self) -> Result<Gpu> {
        let mut opts = GpuOptions::from_env()?;
        if self.group.is_some() && opts.adapter.is_none() {
            opts.ordinal = Some(self.local_rank);
        }
        let gpu = Gpu::with_options(&opts)?;
        match &self.group {
            Some(g) => {
                let line = format!("rank {}/{}: adapter {}\n", g.rank(), g.size(), gpu.describe());
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            }
            None => eprintln!("adapter: {}", gpu.describe()),
        }
        Ok(gpu)
    }
}

impl Dist {
    /// Ends the job after this rank failed: prints the error with the rank, then MPI_Abort
    /// ends every rank (the others may be waiting for this one in a collective). Returns
    /// without a group.
    pub fn abort_on_error(&self, e: &Error) {
        if let Some(g) = &self.group {
            // One write, so that the line is not interleaved with other ranks' output.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error on rank {} of {}: {e}\n", g.rank(), g.size()).as_bytes(),
            );
            g.abort(1);
        }
    }
}
