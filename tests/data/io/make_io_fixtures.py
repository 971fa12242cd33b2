# Regenerates the small fixtures of tests/test_io.cpp (run with a Python that
# has numpy and torch; the tests themselves never need Python):
#   /usr/bin/python3 tests/data/io/make_io_fixtures.py
import os, struct, zipfile, zlib, collections
import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
P = lambda name: os.path.join(here, name)

# --- npy -------------------------------------------------------------------
np.save(P("be_f4.npy"), (np.arange(6, dtype=">f4").reshape(2, 3) * 1.5 - 2))
np.save(P("be_i8.npy"), np.array([1, -2, 3 << 40, -(5 << 50)], dtype=">i8"))
np.save(P("fortran_f8.npy"), np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7))
np.save(P("f16.npy"), np.array([0, 1, -2.5, 65504, 2**-24, 1e-5, np.inf, -np.inf, np.nan, -0.0], dtype=np.float16))
np.save(P("bool.npy"), np.array([[True, False], [False, True]]))
with open(P("v2_i16.npy"), "wb") as f:
    np.lib.format.write_array(f, np.array([-3, 0, 7], dtype="<i2"), version=(2, 0))
with open(P("v3_u8.npy"), "wb") as f:
    np.lib.format.write_array(f, np.array([[1, 2], [3, 255]], dtype=np.uint8), version=(3, 0))
np.save(P("object.npy"), np.array([1, "a", None], dtype=object), allow_pickle=True)
np.save(P("unicode.npy"), np.array(["ab", "c"]))
np.save(P("complex.npy"), np.array([1 + 2j], dtype=np.complex64))
np.save(P("structured.npy"), np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]))

# --- npz -------------------------------------------------------------------
np.savez(P("stored.npz"), a=np.arange(5, dtype=np.int32), b=np.array([[1.5, -2], [3, 4.25]], dtype=np.float32),
         c=np.float64(2.5))
np.savez_compressed(P("compressed.npz"), x=np.zeros(3, dtype=np.float32))

# --- a ZIP64 archive (central directory fields saturated, ZIP64 extra + EOCD64)
def zip64(path, entries):
    out = b""
    cd = b""
    for name, data in entries:
        nb = name.encode()
        crc = zlib.crc32(data)
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, len(data), len(data), len(nb), 0)
        out += nb + data
        extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(nb), len(extra), 0, 0, 0, 0, 0xFFFFFFFF)
        cd += nb + extra
    cd_off = len(out)
    out += cd
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(cd), cd_off)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    open(path, "wb").write(out)

buf = np.lib.format
import io
def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()
zip64(P("zip64.npz"), [("w.npy", npy(np.array([1.0, 2.0, 3.0], dtype=np.float32))), ("note.npy", npy(np.arange(4, dtype=np.int64)))])
z = np.load(P("zip64.npz"))
assert list(z["w"]) == [1, 2, 3] and list(z["note"]) == [0, 1, 2, 3]

# --- torch checkpoints -----------------------------------------------------
g = torch.Generator().manual_seed(0)
base = torch.randn(4, 6, generator=g)
sd = collections.OrderedDict()
sd["module.t"] = base.t()                       # non-contiguous view (stride (1, 6))
sd["module.slice"] = base[1:3, 2:5]             # storage offset + non-contiguous, shares base's storage
sd["module.base"] = base                        # the shared storage itself
sd["half"] = torch.tensor([1.0, -0.5, 65504.0], dtype=torch.float16)
sd["bf16"] = torch.tensor([1.0, -3.0, 0.125], dtype=torch.bfloat16)
sd["f64"] = torch.tensor([[1.0 / 3]], dtype=torch.float64)
sd["long"] = torch.tensor([1, -2, 1 << 40], dtype=torch.int64)
sd["int"] = torch.tensor([7, -9], dtype=torch.int32)
sd["bool"] = torch.tensor([True, False, True])
sd["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
sd["scalar"] = torch.tensor(3.5)
sd["empty"] = torch.zeros(0, 3)
sd["param"] = torch.nn.Parameter(torch.tensor([0.25, 0.5]))
sd["expanded_row"] = torch.arange(5, dtype=torch.float32).expand(1, 5)
torch.save(sd, P("views.pth"))
torch.save(sd, P("views_p4.pth"), _use_new_zipfile_serialization=True, pickle_protocol=4)

class Evil:
    def __reduce__(self):
        return (os.system, ("echo flowless-executed-pickle-code",))

w = torch.tensor([1.0, 2.0])
torch.save({"good": {"module.w": w}, "bad": {"module.w": w, "evil": Evil()}, "meta": Evil(), "n": 3},
           P("evil.pth"))

# A real module state_dict: an OrderedDict carrying _metadata (pickled via BUILD).
lin = torch.nn.Linear(2, 3)
with torch.no_grad():
    lin.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(3, 2) - 2.5)
    lin.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
torch.save({"state_dict": lin.state_dict()}, P("linear.pth"))
