//! A measured choice among the matmul's tile sets, per class of product shapes, at first use
//! (`kernels/tuning.rs` keeps the picks, the cache file and the budget). On GPUs the candidates
//! are the tiled kernel's large (8x4) and small (4x4) blocks: on an H200 the fixed rule (large
//! blocks only where they make 512 workgroups) picked 4x4 for 4096x512x512 and 768x768x1576,
//! where 8x4 ran 17-21% faster, and was right for 512x512x4096 (8x4 25% slower). On CPU
//! adapters they are the register tiles: large (16x1 invocations of 32 rows), small (8x1 of 8)
//! and, where N allows, wide (32x1 of 32). Every candidate sums each output in the same order,
//! so the choice changes speed, never a product's bits. On the tiled kernel, products with too
//! few blocks of C to fill a GPU and a long K (weight gradients) are also measured with K in
//! 2, 4, 8, 16 and the rule's splits (`large/s4` in the cache); a split sums in another order.

use super::{split, Matmul, MatmulSet, MatmulShape};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::tuning::{self, class_size, Family};

/// Products are measured at most this many FLOPs on CPU adapters (about a millisecond on
/// lavapipe on the Xeon it was tuned on): larger ones are measured with fewer batch entries,
/// then rows (down to 64), then columns (down to 256, in steps that keep N's multiples of 128).
const CPU_MEASURE_FLOPS: f64 = (1u64 << 24) as f64;

/// The class a product is tuned for: transposes, vec4 alignment, and the power of two at or
/// above each of batch, M, N and K.
fn class_of(s: &MatmulShape) -> String {
    let t = |x: bool| if x { 'T' } else { 'N' };
    format!(
        "{}{} {} b{} m{} n{} k{}",
        t(s.trans_a),
        t(s.trans_b),
        if s.vec4_aligned() { "v4" } else { "s" },
        class_size(s.batch),
        class_size(s.m),
        class_size(s.n),
        class_size(s.k)
    )
}

/// The packed product measured for `s`: its sizes, cut to `max_flops`.
fn measured_shape(s: &MatmulShape, max_flops: f64) -> MatmulShape {
    let (mut batch, mut m, mut n) = (s.batch, s.m, s.n);
    let flops = |batch: usize, m: usize, n: usize| 2.0 * (batch * m) as f64 * (n * s.k) as f64;
    while batch > 1 && flops(batch, m, n) > max_flops {
        batch = batch.div_ceil(2);
    }
    while m > 64 && flops(batch, m, n) > max_flops {
        m = m.div_ceil(2);
    }
    // Halving keeps N a multiple of 128 (the wide tiles' columns) while it stays over 256.
    while n > 256 && n.is_multiple_of(256) && flops(batch, m, n) > max_flops {
        n /= 2;
    }
    let packed = MatmulShape::packed(batch, m, n, s.k, s.trans_a, s.trans_b);
    MatmulShape { bias: s.bias, accumulate: s.accumulate, ..packed }
}

/// A choice the measurement may make: a tile set and the splits of K it runs the product in.
struct Candidate<'a> {
    /// The set's name, with `/s<splits>` where K runs in splits: what the cache keeps.
    name: String,
    set: &'a MatmulSet,
    splits: usize,
}

/// Split counts measured besides whole products (and the rule's count) where a tiled set
/// splits: products with few blocks of C and a long K, as `split::split_candidates` says.
const MEASURED_SPLITS: [usize; 4] = [2, 4, 8, 16];

impl Matmul {
    /// The tile sets `shape` may run with, by name.
    fn sets(&self, shape: &MatmulShape) -> Vec<(&'static str, &MatmulSet)> {
        let mut sets = vec![("large", &self.large)];
        if let Some(small) = &self.small {
            sets.push(("small", small));
        }
        if let Some(wide) = self.wide.as_ref().filter(|w| shape.n.is_multiple_of(4 * w.tiles.wg_n as usize)) {
            sets.push(("wide", wide));
        }
        sets
    }

    /// The choices `shape` may run with (one: nothing to choose): each tile set whole (in the
    /// splits `WGFORMER_MATMUL_SPLITS` forces, if any), and on the tiled kernel in splits of K
    /// where the product has few blocks of C and a long K.
    fn candidates(&self, gpu: &Gpu, shape: &MatmulShape) -> Vec<Candidate<'_>> {
        let forced = gpu.settings.kernels.matmul_splits.is_some();
        let mut all = Vec::new();
        for (name, set) in self.sets(shape) {
            let whole = if forced { split::k_split_of(shape.k, split::split_rule(gpu, set, shape)).1 } else { 1 };
            all.push(Candidate { name: name.into(), set, splits: whole });
            for splits in split::split_candidates(gpu, set, shape, &MEASURED_SPLITS) {
                all.push(Candidate { name: format!("{name}/s{splits}"), set, splits });
            }
        }
        all
    }

    /// The choice named `pick` for `shape`, if it is a candidate.
    fn candidate(&self, gpu: &Gpu, shape: &MatmulShape, pick: &str) -> Option<(&MatmulSet, usize)> {
        self.candidates(gpu, shape).into_iter().find(|c| c.name == pick).map(|c| (c.set, c.splits))
    }

    /// The rule's choice: its tile set and split count.
    fn rule(&self, gpu: &Gpu, shape: &MatmulShape) -> (&MatmulSet, usize) {
        let set = self.set_for(shape);
        (set, split::k_split_of(shape.k, split::split_rule(gpu, set, shape)).1)
    }

    /// The pipelines and splits of K `shape` runs with: measured for its class on first use
    /// where tuning is on and budget is left, else the rule.
    pub(super) fn choose(&self, gpu: &Gpu, shape: &MatmulShape) -> Result<(&MatmulSet, usize)> {
        let candidates = self.candidates(gpu, shape);
        if candidates.len() < 2 || !tuning::enabled(gpu, Family::Matmul) {
            return Ok(self.rule(gpu, shape));
        }
        let class = class_of(shape);
        if let Some(choice) = self.tuned.get(gpu, &class).and_then(|pick| self.candidate(gpu, shape, &pick)) {
            return Ok(choice);
        }
        if !tuning::budget_left(gpu) {
            return Ok(self.rule(gpu, shape));
        }
        let max_flops = if gpu.is_cpu() { CPU_MEASURE_FLOPS } else { f64::INFINITY };
        match self.measure(gpu, shape, &measured_shape(shape, max_flops), &candidates) {
            Ok(i) => {
                self.tuned.insert(gpu, class, &candidates[i].name);
                Ok((candidates[i].set, candidates[i].splits))
            }
            // A lost device stays an error; anything else (operands over the adapter's limits,
            // a loop budget) keeps the rule.
            Err(e) if e.is_device_lost() => Err(e),
            Err(_) => Ok(self.rule(gpu, shape)),
        }
    }

    /// How many product classes have a measured choice (for tests and reports).
    pub fn tuned_shapes(&self) -> usize {
        self.tuned.len()
    }

    /// The set and splits `shape` runs with so far: measured, or the rule's (no measuring).
    pub(super) fn chosen(&self, gpu: &Gpu, shape: &MatmulShape) -> (&MatmulSet, usize) {
        let pick = self.tuned.peek(&class_of(shape));
        pick.and_then(|p| self.candidate(gpu, shape, &p)).unwrap_or_else(|| self.rule(gpu, shape))
    }

    /// The set `shape` runs with so far (its splits aside): measured, or the rule's.
    pub(super) fn chosen_set(&self, shape: &MatmulShape) -> &MatmulSet {
        let pick = self.tuned.peek(&class_of(shape));
        let name = pick.as_deref().and_then(|p| p.split('/').next());
        let set = name.and_then(|n| self.sets(shape).into_iter().find(|(s, _)| *s == n).map(|(_, set)| set));
        set.unwrap_or_else(|| self.set_for(shape))
    }

    /// The index of the fastest of `candidates` on zero operands of `measured` (`shape` cut
    /// to the measuring limit; the rule's choice is `shape`'s).
    fn measure(
        &self,
        gpu: &Gpu,
        shape: &MatmulShape,
        measured: &MatmulShape,
        candidates: &[Candidate],
    ) -> Result<usize> {
        let (na, nb, nc) = measured.extents();
        let (a, b, out) = (gpu.zeros("tune.a", na)?, gpu.zeros("tune.b", nb)?, gpu.zeros("tune.c", nc)?);
        let bias = if measured.bias { Some(gpu.zeros("tune.bias", measured.n)?) } else { None };
        let extras = Default::default();
        let runs = candidates
            .iter()
            .map(|c| self.fwd_with(gpu, c.set, &out, &a, &b, bias.as_ref(), extras, measured, c.splits))
            .collect::<Result<Vec<_>>>()?;
        let (rule, splits) = self.rule(gpu, shape);
        let rule = candidates.iter().position(|c| std::ptr::eq(c.set, rule) && c.splits == splits).unwrap_or(0);
        tuning::fastest(gpu, &runs, rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_products_are_cut_to_the_flop_limit_keeping_their_class_traits() {
        let big = MatmulShape { bias: true, ..MatmulShape::packed(8, 1024, 8192, 128, false, true) };
        let cut = measured_shape(&big, CPU_MEASURE_FLOPS);
        assert_eq!((cut.batch, cut.m, cut.k, cut.trans_a, cut.trans_b, cut.bias), (1, 64, 128, false, true, true));
        // Columns halve while N stays a multiple of 256 and above 256.
        assert_eq!(cut.n, 1024);
        assert!(cut.flops() <= CPU_MEASURE_FLOPS, "{} FLOPs", cut.flops());
        // Small products are measured whole, and no limit keeps every size.
        let small = MatmulShape::packed(2, 70, 33, 19, true, false);
        assert_eq!(measured_shape(&small, CPU_MEASURE_FLOPS), small);
        assert_eq!(measured_shape(&big, f64::INFINITY).m, 1024);
        // Sizes in one power of two share a class; transposes and alignment do not.
        let c = |m, n, ta| class_of(&MatmulShape::packed(1, m, n, 128, ta, false));
        assert_eq!(c(1000, 512, false), c(1024, 512, false));
        assert_ne!(c(1024, 512, false), c(1024, 512, true));
        assert_ne!(c(1024, 512, false), c(1024, 513, false));
    }
}
