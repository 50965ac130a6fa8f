//! The GPU matmul kernels keep their accumulators in registers: in naga's SPIR-V for every
//! pipeline-constant combination they are built with, no access chain indexes an array in
//! Function storage (a private `var` array) with an index that is not a constant. Drivers place
//! such arrays in local memory (on NVIDIA the 8 x 8 block of matmul_tiled.wgsl ran at a tenth of
//! the 4 x 8 block's speed until its accumulators were named). The CPU adapters' kernels
//! (matmul.wgsl, matmul_sg.wgsl) are left out: llvmpipe unrolls their pipeline-constant loops.

use std::collections::{HashMap, HashSet};

const OP_TYPE_ARRAY: u32 = 28;
const OP_TYPE_POINTER: u32 = 32;
const OP_CONSTANT: u32 = 43;
const OP_VARIABLE: u32 = 59;
const OP_ACCESS_CHAIN: u32 = 65;
const OP_IN_BOUNDS_ACCESS_CHAIN: u32 = 66;
const STORAGE_FUNCTION: u32 = 7;

/// SPIR-V of `entry` in `source` with the pipeline constants `constants`.
fn spirv(source: &str, entry: &str, constants: &[(&str, f64)]) -> Vec<u32> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{entry}: {e}"));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).unwrap();
    let mut values = naga::back::PipelineConstants::default();
    for (name, v) in constants {
        values.insert(name.to_string(), *v);
    }
    let stage = naga::ShaderStage::Compute;
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, Some((stage, entry)), &values).unwrap();
    let pipeline = naga::back::spv::PipelineOptions { shader_stage: stage, entry_point: entry.to_string() };
    naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), Some(&pipeline)).unwrap()
}

/// The instructions of a SPIR-V module: (opcode, operands).
fn instructions(words: &[u32]) -> Vec<(u32, &[u32])> {
    let mut out = Vec::new();
    let mut at = 5; // the header
    while at < words.len() {
        let (count, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        assert!(count > 0 && at + count <= words.len(), "malformed SPIR-V");
        out.push((op, &words[at + 1..at + count]));
        at += count;
    }
    out
}

/// Access chains into a Function-storage array whose first index is not a constant.
fn dynamic_private_array_accesses(words: &[u32]) -> usize {
    let ins = instructions(words);
    let arrays: HashSet<u32> = ins.iter().filter(|(op, _)| *op == OP_TYPE_ARRAY).map(|(_, o)| o[0]).collect();
    let constants: HashSet<u32> = ins.iter().filter(|(op, _)| *op == OP_CONSTANT).map(|(_, o)| o[1]).collect();
    // Pointer types to arrays in Function storage.
    let pointers: HashSet<u32> = ins
        .iter()
        .filter(|(op, o)| *op == OP_TYPE_POINTER && o[1] == STORAGE_FUNCTION && arrays.contains(&o[2]))
        .map(|(_, o)| o[0])
        .collect();
    let private_arrays: HashMap<u32, ()> = ins
        .iter()
        .filter(|(op, o)| *op == OP_VARIABLE && o[2] == STORAGE_FUNCTION && pointers.contains(&o[0]))
        .map(|(_, o)| (o[1], ()))
        .collect();
    ins.iter()
        .filter(|(op, _)| *op == OP_ACCESS_CHAIN || *op == OP_IN_BOUNDS_ACCESS_CHAIN)
        .filter(|(_, o)| private_arrays.contains_key(&o[2]) && o.get(3).is_some_and(|i| !constants.contains(i)))
        .count()
}

#[test]
fn gpu_matmul_kernels_index_no_private_array_at_run_time() {
    let mut checked = 0;
    for trans in 0..4 {
        let t = [("TRANS_A", (trans >> 1) as f64), ("TRANS_B", (trans & 1) as f64)];
        for (tm, tn) in [(4.0, 4.0), (4.0, 8.0), (8.0, 4.0), (8.0, 8.0)] {
            let c = [t[0], t[1], ("TM", tm), ("TN", tn)];
            let words = spirv(wgformer::shaders::MATMUL_TILED, "matmul_tiled", &c);
            assert_eq!(dynamic_private_array_accesses(&words), 0, "matmul_tiled {c:?}");
            checked += 1;
        }
        let words = spirv(wgformer::shaders::MATMUL_F16, "matmul_f16", &t);
        assert_eq!(dynamic_private_array_accesses(&words), 0, "matmul_f16 {t:?}");
        checked += 1;
    }
    assert_eq!(checked, 20);
}

/// The check finds what it looks for: a loop over a private array.
#[test]
fn the_check_sees_a_private_array_indexed_by_a_loop() {
    let source = "@group(0) @binding(0) var<storage, read_write> out: array<f32>;
        @compute @workgroup_size(1) fn main() {
            var acc: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) { acc[i] = f32(i); }
            out[0] = acc[0] + acc[3];
        }";
    assert!(dynamic_private_array_accesses(&spirv(source, "main", &[])) > 0);
}
