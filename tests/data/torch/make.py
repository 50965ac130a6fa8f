"""Makes the torch.save test files: state_dict.bin (a tied pair, an offset view, a transposed
view, half, bfloat16, double and int64 tensors, an nn.Parameter, the `_metadata` a module's
state dict carries) with expected.safetensors (the same tensors, contiguous, as float32 or
int64), and evil.bin, whose pickle calls os.system. tests/cpu/torch_pickle.rs reads them.

    python tests/data/torch/make.py      # needs: pip install torch safetensors
"""
import collections
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def main():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, generator=g)
    sd = collections.OrderedDict()
    sd["a.weight"] = w
    sd["b.weight"] = w
    sd["c.bias"] = torch.randn(5, generator=g)[1:4]
    sd["d.weight"] = torch.randn(2, 3, generator=g).t()
    sd["e.half"] = torch.randn(4, generator=g).half()
    sd["f.bf16"] = torch.randn(2, 2, generator=g).bfloat16()
    sd["g.double"] = torch.randn(3, generator=g).double()
    sd["h.ids"] = torch.arange(6).reshape(2, 3)
    sd["i.param"] = torch.nn.Parameter(torch.randn(2, generator=g))
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save(sd, os.path.join(HERE, "state_dict.bin"))
    expected = {k: (v.detach().float() if v.is_floating_point() else v).contiguous().clone() for k, v in sd.items()}
    save_file(expected, os.path.join(HERE, "expected.safetensors"))
    torch.save({"x": Evil()}, os.path.join(HERE, "evil.bin"))


if __name__ == "__main__":
    main()
