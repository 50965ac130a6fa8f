//! Data-parallel training with ranks as threads of one process (no MPI needed): two ranks at
//! half the batch each compute the same steps as one process on the whole batch, and hold
//! the same bits after every run. tests/mpi_data_parallel.rs runs the same cases over MPI.

use crate::common;
use common::data_parallel::{assert_identical, assert_matches, train_rank, train_whole, transformer, vit, Sharded};
use std::sync::Arc;
use wgformer::dist::collective::{Collective, LocalGroup};

fn check(gpu: &wgformer::Gpu, s: &Sharded) {
    let whole = train_whole(gpu, s);
    let group = LocalGroup::new(s.shards.len());
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|member| {
                let member: Arc<dyn Collective> = Arc::new(member);
                scope.spawn(move || train_rank(gpu, s, member))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    });
    assert_identical(s.name, &runs);
    let f16 = s.whole.graph.precision == wgformer::graph::Precision::F16;
    assert_matches(s.name, &whole, &runs[0], f16);
    let comm = runs[0].comm;
    assert!(comm.buckets >= 1 && comm.bytes > 0, "{}: {comm:?}", s.name);
}

#[test]
fn two_ranks_train_like_one_process_vit() {
    common::for_each_gpu(|gpu| check(gpu, &vit(2)));
}

#[test]
fn two_ranks_train_like_one_process_transformer() {
    common::for_each_gpu(|gpu| check(gpu, &transformer(2)));
}

#[test]
fn three_ranks_with_unequal_token_shares() {
    common::for_each_gpu(|gpu| check(gpu, &transformer(3)));
}

/// Mixed precision: the loss scale multiplies each rank's share, the summed gradients are
/// unscaled while clipping, and every rank takes the same skip decisions.
#[test]
fn two_ranks_in_mixed_precision_train_like_one_process() {
    common::for_each_gpu(|gpu| {
        if !gpu.caps.f16 {
            eprintln!("skipped on {}: no f16 shaders", gpu.describe());
            return;
        }
        check(gpu, &vit(2).in_precision(wgformer::graph::Precision::F16));
        check(gpu, &transformer(2).in_precision(wgformer::graph::Precision::F16));
    });
}

#[test]
fn a_rank_that_disagrees_is_named_on_every_rank() {
    let group = LocalGroup::new(2);
    let errors: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .iter()
            .map(|m| scope.spawn(move || wgformer::dist::collective::check_same(m, "configuration", m.rank() as u64)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap_err().to_string()).collect()
    });
    for e in &errors {
        assert!(e.contains("rank 1 has a different configuration"), "{e}");
    }
}
