// Dropout's counter-based draw, shared by dropout.wgsl and the matmul kernels' store
// (matmul_extras.wgsl): element `index` of the node with `salt` in the step with `seed` is
// kept when hash(seed, salt, index) >= threshold (threshold = p 2^32, saturated). The hash is
// the PCG output permutation applied three times: u32 arithmetic only, so every backend draws
// the same mask, and a kernel that fuses a dropout draws the mask the dropout op would.

// What changes every step (kernels/dropout.rs StepParams).
struct StepParams { seed: u32, step: u32, shard: u32, _pad0: u32, }

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn dropout_keep(seed: u32, salt: u32, index: u32, threshold: u32) -> bool {
    return pcg(pcg(pcg(seed) ^ salt) ^ index) >= threshold;
}
