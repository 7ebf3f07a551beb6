import pytest
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.genome import Genome, GenomeLayout


def _tensors(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "z.weight": torch.randn(3, 4, generator=g).to(dtype),
        "a.bias": torch.tensor([-0.0, 1e-30, -3.5], dtype=dtype),
        "m.weight": torch.randn(2, 2, 2, generator=g).to(dtype),
    }


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_is_bit_exact(dtype: torch.dtype) -> None:
    src = _tensors(dtype)
    genome = Genome.from_tensors(src, kind="delta")
    assert genome.layout.names == ("a.bias", "m.weight", "z.weight")
    assert genome.layout.shapes == ((3,), (2, 2, 2), (3, 4))
    assert genome.layout.numel == 3 + 8 + 12 == genome.flat.numel()
    assert genome.flat.dtype == dtype
    out = genome.tensors()
    assert set(out) == set(src)
    for name, t in src.items():
        assert out[name].shape == t.shape
        assert torch.equal(_bits(out[name]), _bits(t))  # -0.0 and denormals survive
    # offsets follow sorted names
    assert genome.layout.offsets() == [(0, 3), (3, 11), (11, 23)]


def test_views_share_memory_and_from_tensors_copies() -> None:
    src = _tensors()
    genome = Genome.from_tensors(src, kind="lora")
    views = genome.tensors()
    views["m.weight"][1, 0, 1] = 42.0
    assert genome.flat[3 + 5].item() == 42.0
    genome.flat[0] = -7.0
    assert views["a.bias"][0].item() == -7.0
    assert src["a.bias"][0].item() == 0.0  # the source tensors are not aliased
    # Genome(...) and with_flat never copy a buffer of the right dtype
    assert Genome(genome.layout, genome.flat).flat.data_ptr() == genome.flat.data_ptr()
    assert genome.with_flat(genome.flat).flat.data_ptr() == genome.flat.data_ptr()
    clone = genome.clone()
    clone.flat[0] = 1.0
    assert genome.flat[0].item() == -7.0


def test_with_flat_casts_to_layout_dtype() -> None:
    genome = Genome.from_tensors(_tensors(torch.bfloat16), kind="delta")
    other = genome.with_flat(torch.ones(genome.layout.numel, dtype=torch.float64))
    assert other.flat.dtype == torch.bfloat16
    assert torch.equal(other.flat, torch.ones(23, dtype=torch.bfloat16))


def test_content_hash_stable_and_sensitive_to_one_bit() -> None:
    genome = Genome.from_tensors(_tensors(), kind="delta")
    h = genome.content_hash()
    assert len(h) == 64
    assert Genome.from_tensors(_tensors(), kind="delta").content_hash() == h
    assert genome.clone().content_hash() == h
    flipped = genome.clone()
    flipped.flat.view(torch.int32)[17] ^= 1  # lowest mantissa bit of one value
    assert flipped.content_hash() != h
    assert Genome.from_tensors(_tensors(), kind="lora").content_hash() != h  # kind counts
    renamed = {("b.bias" if k == "a.bias" else k): v for k, v in _tensors().items()}
    assert Genome.from_tensors(renamed, kind="delta").content_hash() != h  # names count
    assert Genome.from_tensors(_tensors(torch.float16), kind="delta").content_hash() != h


def test_layout_mismatch_messages() -> None:
    base = Genome.from_tensors(_tensors(), kind="delta").layout
    other_kind = GenomeLayout("lora", base.names, base.shapes, base.dtype)
    with pytest.raises(EvoMergeError, match=r"^parent 2: kind 'lora' does not match 'delta'$"):
        base.check_same(other_kind, what="parent 2")
    fewer = GenomeLayout("delta", base.names[:2], base.shapes[:2], base.dtype)
    with pytest.raises(EvoMergeError, match=r"tensor names differ \(missing \['z.weight'\]\)"):
        base.check_same(fewer)
    more = GenomeLayout("delta", base.names + ("zz",), base.shapes + ((1,),), base.dtype)
    with pytest.raises(EvoMergeError, match=r"unexpected \['zz'\]"):
        base.check_same(more)
    reshaped = GenomeLayout("delta", base.names, ((3,), (8,), (3, 4)), base.dtype)
    with pytest.raises(EvoMergeError, match=r"tensor m.weight has shape \[8\], expected \[2, 2, 2\]"):
        base.check_same(reshaped)
    half = GenomeLayout("delta", base.names, base.shapes, torch.float16)
    with pytest.raises(EvoMergeError, match=r"dtype torch.float16 does not match torch.float32"):
        base.check_same(half)
    base.check_same(GenomeLayout("delta", base.names, base.shapes, base.dtype))  # equal: no error


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_detection_names_the_tensor(bad: float) -> None:
    src = _tensors()
    src["m.weight"][0, 1, 0] = bad
    with pytest.raises(EvoMergeError, match=r"^adapter: tensor m.weight holds NaN or Inf values$"):
        Genome.from_tensors(src, kind="lora", what="adapter")
    genome = Genome.from_tensors(src, kind="lora", check_finite=False)
    with pytest.raises(EvoMergeError, match="tensor m.weight"):
        genome.check_finite()


def test_construction_errors() -> None:
    src = _tensors()
    src["a.bias"] = src["a.bias"].double()
    with pytest.raises(EvoMergeError, match=r"mixed dtypes \['torch.float32', 'torch.float64'\]"):
        Genome.from_tensors(src, kind="delta")
    with pytest.raises(EvoMergeError, match="is not floating point"):
        Genome.from_tensors({"x": torch.ones(2, dtype=torch.int64)}, kind="delta")
    with pytest.raises(EvoMergeError, match="no tensors"):
        Genome.from_tensors({}, kind="delta")
    layout = Genome.from_tensors(_tensors(), kind="delta").layout
    with pytest.raises(EvoMergeError, match="flat buffer has 22 values, layout needs 23"):
        Genome(layout, torch.zeros(22))
    with pytest.raises(EvoMergeError, match="does not match layout"):
        Genome(layout, torch.zeros(23, dtype=torch.float64))
