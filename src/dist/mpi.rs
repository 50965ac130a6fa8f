//! [`Collective`] over MPI (feature `mpi`; Open MPI or MPICH through the `mpi` crate).
//!
//! One thread owns MPI: it initializes it, runs every collective in the order the training
//! thread asks for them, and finalizes it when the group is dropped. Sums therefore run while
//! the training thread waits for the GPU's next bucket (a non-blocking MPI_Iallreduce would
//! only progress inside MPI calls in Open MPI's default build, that is not while we wait for
//! the GPU). Aborting goes straight to MPI_Abort from any thread, so that a failing rank ends
//! the job even while the MPI thread is blocked in a collective.

use super::collective::{Collective, Pending, Reduced};
use crate::error::{Error, Result};
use crate::util::oneshot;
use mpi::collective::SystemOperation;
use mpi::topology::Communicator;
use mpi::traits::*;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

enum Job {
    Sum(Vec<f32>, oneshot::Sender<Result<Reduced>>),
    Broadcast(usize, Vec<u8>, mpsc::Sender<Vec<u8>>),
    Gather(u64, mpsc::Sender<Vec<u64>>),
}

/// The ranks of an MPI job (`mpirun -np N ...`).
pub struct MpiGroup {
    rank: usize,
    size: usize,
    local_rank: usize,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Whether this process was started by an MPI launcher (Open MPI's mpirun, MPICH's Hydra,
/// or a PMIx launcher such as srun).
pub fn launched() -> bool {
    crate::settings::mpi_launched()
}

impl MpiGroup {
    /// Initializes MPI on a thread of its own. Call once per process, before any other MPI use.
    pub fn init() -> Result<Self> {
        // Open MPI spins while a rank waits in a collective; here that wait runs beside the
        // driver's own threads, so let it yield (an explicit setting wins).
        crate::settings::prefer_mpi_yield();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let worker = std::thread::Builder::new()
            .name("wgformer-mpi".into())
            .spawn(move || serve(ready_tx, jobs_rx))
            .map_err(|e| Error::Distributed(format!("could not start the MPI thread: {e}")))?;
        let (rank, size, local_rank) = ready_rx
            .recv()
            .map_err(|_| Error::Distributed("the MPI thread stopped while initializing MPI".into()))??;
        Ok(MpiGroup { rank, size, local_rank, jobs: Mutex::new(Some(jobs_tx)), worker: Mutex::new(Some(worker)) })
    }

    /// This rank among the ranks on its machine (which GPU of the machine it takes).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().map_err(|_| Error::Distributed("MPI job queue poisoned".into()))?;
        match jobs.as_ref().map(|j| j.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(Error::Distributed("the MPI thread has stopped".into())),
        }
    }
}

type Ready = Result<(usize, usize, usize)>;

fn serve(ready: mpsc::Sender<Ready>, jobs: mpsc::Receiver<Job>) {
    let Some((universe, _threading)) = mpi::initialize_with_threading(mpi::Threading::Multiple) else {
        let _ = ready.send(Err(Error::Distributed("MPI was already initialized in this process".into())));
        return;
    };
    let world = universe.world();
    // The machine's ranks, for the local rank; freed before MPI is finalized.
    let local_rank = world.split_shared(world.rank()).rank() as usize;
    let _ = ready.send(Ok((world.rank() as usize, world.size() as usize, local_rank)));
    for job in jobs {
        match job {
            Job::Sum(data, done) => {
                let start = std::time::Instant::now();
                let mut out = vec![0.0f32; data.len()];
                world.all_reduce_into(&data[..], &mut out[..], SystemOperation::sum());
                done.send(Ok(Reduced { data: out, seconds: start.elapsed().as_secs_f64() }));
            }
            Job::Broadcast(root, bytes, done) => {
                let root = world.process_at_rank(root as i32);
                let mut len = bytes.len() as u64;
                root.broadcast_into(&mut len);
                let mut buf = if world.rank() == root.rank() { bytes } else { vec![0u8; len as usize] };
                root.broadcast_into(&mut buf[..]);
                let _ = done.send(buf);
            }
            Job::Gather(value, done) => {
                let mut all = vec![0u64; world.size() as usize];
                world.all_gather_into(&value, &mut all[..]);
                let _ = done.send(all);
            }
        }
    }
    // Dropping the universe finalizes MPI, on the thread that initialized it.
    drop(universe);
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn start_sum(&self, data: Vec<f32>) -> Pending {
        let (tx, rx) = oneshot::channel();
        let (fail, failed) = oneshot::channel();
        match self.send(Job::Sum(data, tx)) {
            Ok(()) => rx,
            Err(e) => {
                fail.send(Err(e));
                failed
            }
        }
    }

    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Result<Vec<u8>> {
        if root >= self.size {
            return Err(Error::Distributed(format!("no rank {root} among {}", self.size)));
        }
        let (tx, rx) = mpsc::channel();
        self.send(Job::Broadcast(root, bytes, tx))?;
        rx.recv().map_err(|_| Error::Distributed("the MPI thread stopped during a broadcast".into()))
    }

    fn gather(&self, value: u64) -> Result<Vec<u64>> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Gather(value, tx))?;
        rx.recv().map_err(|_| Error::Distributed("the MPI thread stopped during a gather".into()))
    }

    fn abort(&self, code: i32) -> ! {
        // SAFETY: MPI is initialized (with thread support `Multiple`, so any thread may call
        // it) for as long as the group exists; MPI_Abort does not return.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
        }
        std::process::exit(code)
    }
}

impl Drop for MpiGroup {
    fn drop(&mut self) {
        // Closing the queue ends the MPI thread, which finalizes MPI.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(worker) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = worker.join();
        }
    }
}
