//! What data-parallel training needs from a group of ranks (processes under MPI, or threads of
//! one process in tests): sums of gradient buckets that run while the caller goes on,
//! broadcasts, and checks that every rank agrees. `engine/mpi.rs` (feature `mpi`) implements
//! it over MPI; [`LocalGroup`] over threads.

use crate::error::{Error, Result};
use crate::util::oneshot;
use std::sync::{Arc, Condvar, Mutex};

/// A finished sum: the values and the seconds the reduction itself took.
#[derive(Clone, Debug)]
pub struct Reduced {
    pub data: Vec<f32>,
    pub seconds: f64,
}

/// A sum under way; awaiting it (or `pollster::block_on`) gives its result.
pub type Pending = oneshot::Receiver<Result<Reduced>>;

/// A group of ranks that train one model together. Every rank must make the same calls in
/// the same order with the same lengths (a collective is matched by its place in that order).
pub trait Collective: Send + Sync {
    /// This rank, from 0.
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn size(&self) -> usize;
    /// Starts summing `data` element-wise over every rank and returns at once; every rank
    /// receives the same bits.
    fn start_sum(&self, data: Vec<f32>) -> Pending;
    /// Rank `root`'s `bytes`, on every rank (the others' `bytes` are ignored).
    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Result<Vec<u8>>;
    /// Every rank's `value`, in rank order.
    fn gather(&self, value: u64) -> Result<Vec<u64>>;
    /// Ends every rank of the job with exit code `code` (the caller has printed why).
    fn abort(&self, code: i32) -> !;
}

/// Sums `data` over every rank (blocking).
pub fn sum(group: &dyn Collective, data: Vec<f32>) -> Result<Vec<f32>> {
    pollster::block_on(group.start_sum(data)).map(|r| r.data)
}

/// A 64-bit FNV-1a hash, for comparing configurations and parameters across ranks.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// `Ok` when every rank has the same `value` of `what`; otherwise the same error on every
/// rank, naming the first rank that differs from rank 0 (so no rank waits for the others).
pub fn check_same(group: &dyn Collective, what: &str, value: u64) -> Result<()> {
    let all = group.gather(value)?;
    match all.iter().position(|&v| v != all[0]) {
        None => Ok(()),
        Some(r) => Err(Error::Distributed(format!(
            "rank {r} has a different {what} than rank 0: every rank must run the same command, model and data"
        ))),
    }
}

/// Rank 0's values of `tensors` on every rank (parameters at the start, so that every rank
/// starts from the same bits).
pub fn broadcast_f32(group: &dyn Collective, tensors: &mut [Vec<f32>]) -> Result<()> {
    let bytes: Vec<u8> = tensors.iter().flat_map(|t| bytemuck::cast_slice::<f32, u8>(t).iter().copied()).collect();
    let got = group.broadcast(0, bytes)?;
    let want: usize = tensors.iter().map(|t| t.len() * 4).sum();
    if got.len() != want {
        return Err(Error::Distributed(format!(
            "rank 0 sent {} bytes of parameters, rank {} expected {want}: the ranks build different models",
            got.len(),
            group.rank()
        )));
    }
    let mut at = 0;
    for t in tensors.iter_mut() {
        let n = t.len() * 4;
        *t = bytemuck::pod_collect_to_vec::<u8, f32>(&got[at..at + n]);
        at += n;
    }
    Ok(())
}

/// Ranks that are threads of one process: for tests of data-parallel training without MPI.
/// Collectives block until every member has made the same call.
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Exchange>,
}

impl LocalGroup {
    /// `n` members, one per thread, ranks 0..n.
    pub fn new(n: usize) -> Vec<LocalGroup> {
        let shared = Arc::new(Exchange {
            n,
            state: Mutex::new(Round { deposits: vec![None; n], arrived: 0, taken: 0, result: None, generation: 0 }),
            changed: Condvar::new(),
        });
        (0..n).map(|rank| LocalGroup { rank, shared: shared.clone() }).collect()
    }

    /// Every member's `bytes`, by rank.
    fn exchange(&self, bytes: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>> {
        let poisoned = |_| Error::Distributed("a member of the local group panicked".into());
        let ex = &self.shared;
        let mut s = ex.state.lock().map_err(poisoned)?;
        // Wait for the previous round to be collected by everyone.
        while s.result.is_some() {
            s = ex.changed.wait(s).map_err(poisoned)?;
        }
        let generation = s.generation;
        s.deposits[self.rank] = Some(bytes);
        s.arrived += 1;
        if s.arrived == ex.n {
            s.result = Some(Arc::new(s.deposits.iter_mut().map(|d| d.take().unwrap_or_default()).collect()));
            ex.changed.notify_all();
        }
        while s.generation == generation && s.result.is_none() {
            s = ex.changed.wait(s).map_err(poisoned)?;
        }
        let result = s.result.clone().ok_or_else(|| Error::Distributed("local group round lost".into()))?;
        s.taken += 1;
        if s.taken == ex.n {
            (s.arrived, s.taken, s.result) = (0, 0, None);
            s.generation += 1;
            ex.changed.notify_all();
        }
        Ok(result)
    }
}

struct Exchange {
    n: usize,
    state: Mutex<Round>,
    changed: Condvar,
}

struct Round {
    deposits: Vec<Option<Vec<u8>>>,
    arrived: usize,
    taken: usize,
    result: Option<Arc<Vec<Vec<u8>>>>,
    generation: u64,
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.n
    }

    fn start_sum(&self, data: Vec<f32>) -> Pending {
        let (tx, rx) = oneshot::channel();
        let start = std::time::Instant::now();
        let n = data.len();
        let result = self.exchange(bytemuck::cast_slice(&data).to_vec()).and_then(|all| {
            let mut out = vec![0.0f32; n];
            // Every member sums in rank order, so every member gets the same bits.
            for bytes in all.iter() {
                if bytes.len() != n * 4 {
                    return Err(Error::Distributed(format!("sums of {} and {n} values", bytes.len() / 4)));
                }
                for (o, v) in out.iter_mut().zip(bytemuck::pod_collect_to_vec::<u8, f32>(bytes)) {
                    *o += v;
                }
            }
            Ok(Reduced { data: out, seconds: start.elapsed().as_secs_f64() })
        });
        tx.send(result);
        rx
    }

    fn broadcast(&self, root: usize, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let all = self.exchange(bytes)?;
        all.get(root).cloned().ok_or_else(|| Error::Distributed(format!("no rank {root}")))
    }

    fn gather(&self, value: u64) -> Result<Vec<u64>> {
        let all = self.exchange(value.to_le_bytes().to_vec())?;
        Ok(all.iter().map(|b| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))).collect())
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
