"""Accelerators as data (formulas/hardware.toml, layercost_sym/hardware.py): the shipped table
loads, every number has a source, the figures agree with the vendors' documents and with each
other, a broken file is reported at the line that broke it, and `layercost hardware` prints it.

Expected values here are the vendors' printed figures (quoted in the comments, as the sources in
the file quote them), converted by hand: never read back from the file."""

import ast
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

import layercost_sym as lc
from layercost_sym.cli import main
from layercost_sym.errors import (
    CatalogueError,
    HardwareError,
    LayercostError,
    UnknownHardwareError,
)
from layercost_sym.hardware import (
    DTYPES,
    KINDS,
    Chip,
    format_hardware_table,
    hardware,
    hardwares,
    load_hardware,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "formulas" / "hardware.toml"
TERA, GIGA, GIB = 10**12, 10**9, 2**30

REQUIRED = [
    "A100-SXM-80GB",
    "A100-PCIe-40GB",
    "H100-SXM",
    "H100-PCIe",
    "H200",
    "B200",
    "MI300X",
    "L4",
    "L40S",
    "RTX-4090",
    "T4",
    "TPU-v5e",
]


def chips() -> list[Chip]:
    return [hardware(name) for name in hardwares()]


# --- the shipped table ---------------------------------------------------------------------------


def test_the_shipped_table_loads_in_file_order():
    names = hardwares()
    assert isinstance(names, tuple) and len(names) >= 14
    loaded = load_hardware(SHIPPED)
    assert tuple(loaded) == names
    assert all(loaded[name] == hardware(name) for name in names)
    text = SHIPPED.read_text()
    headers = [m.strip('"') for m in re.findall(r'^\[("?[^.\]]+"?)\]$', text, re.MULTILINE)]
    assert tuple(headers) == names  # file order, one top-level table per chip


def test_every_required_chip_is_there():
    names = set(hardwares())
    assert set(REQUIRED) <= names
    kinds = {hardware(name).kind for name in names}
    assert {"gpu", "tpu", "cpu"} <= kinds
    assert any(name.startswith("M") and hardware(name).kind == "soc" for name in names)  # Apple
    cpu = [hardware(name) for name in names if hardware(name).kind == "cpu"]
    assert cpu and {"fp64", "fp32"} <= set(cpu[0].vector)


def test_every_number_has_a_source_and_every_source_a_number():
    vendors = ("NVIDIA", "AMD", "Google", "Apple", "Intel")
    for chip in chips():
        numbers = {"memory", "bandwidth"}
        numbers |= {f"matrix.{d}" for d in chip.matrix} | {f"vector.{d}" for d in chip.vector}
        assert set(chip.sources) == numbers, chip.name
        for key, text in chip.sources.items():
            assert isinstance(text, str) and len(text) > 30, (chip.name, key)
            assert text.startswith(vendors), (chip.name, key, text)  # the vendor's own document


def test_every_required_field_is_well_formed():
    for chip in chips():
        assert chip.kind in KINDS, chip.name
        for value in (chip.memory, chip.bandwidth, *chip.matrix.values(), *chip.vector.values()):
            assert type(value) is int and value > 0, chip.name  # exact, never a float
        assert set(chip.matrix) | set(chip.vector) <= set(DTYPES)
        assert chip.matrix or chip.vector, chip.name
        assert chip.note, chip.name  # every shipped chip says what its figures are


def test_the_file_documents_its_grammar_first():
    head = SHIPPED.read_text().split("\n[", 1)[0]
    for word in ("kind", "note", "memory", "bandwidth", "matrix", "vector", "sources", "required"):
        assert word in head, word
    assert "sparsity" in head and "2**30" in head
    assert "## Hardware" in (ROOT / "formulas" / "README.md").read_text()


def test_the_catalogue_does_not_read_the_hardware_file_as_rules():
    from layercost_sym.cache import catalogue

    assert "hardware.toml" not in {path.name for path in catalogue().files}


# --- figures against the vendors' documents ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field", "expected"),
    [
        # A100 datasheet, 'A100 80GB SXM': BFLOAT16 Tensor Core 312 TFLOPS | 624 TFLOPS*
        ("A100-SXM-80GB", "matrix.bf16", 312 * TERA),
        # A100 datasheet: FP64 9.7 TFLOPS, GPU Memory Bandwidth 2,039GB/s (SXM), 1,555GB/s (PCIe)
        ("A100-SXM-80GB", "vector.fp64", 9_700 * GIGA),
        ("A100-SXM-80GB", "bandwidth", 2_039 * GIGA),
        ("A100-PCIe-40GB", "bandwidth", 1_555 * GIGA),
        # H100 whitepaper, H100 SXM5: Peak BF16 Tensor TFLOPS 989.4/1978.9, FP8 1978.9/3957.8
        ("H100-SXM", "matrix.bf16", 989_400 * GIGA),
        ("H100-SXM", "matrix.fp8", 1_978_900 * GIGA),
        ("H100-SXM", "vector.fp32", 66_900 * GIGA),
        # H100 datasheet, H100 SXM: 3.35TB/s; H100 PCIe: BFLOAT16 1,513 TFLOPS* (sparse), 2TB/s
        ("H100-SXM", "bandwidth", 3_350 * GIGA),
        ("H100-PCIe", "matrix.bf16", 1_513 * TERA // 2),
        ("H100-PCIe", "bandwidth", 2_000 * GIGA),
        # H200 datasheet, H200 SXM: FP8 Tensor Core 3,958 TFLOPS* (sparse), 4.8TB/s
        ("H200", "matrix.fp8", 3_958 * TERA // 2),
        ("H200", "bandwidth", 4_800 * GIGA),
        # HGX B200 (8 GPUs, sparse): FP16/BF16 36 PFLOPS; DGX B200: 64TB/s for 8 GPUs
        ("B200", "matrix.bf16", 36 * 1000 * TERA // 8 // 2),
        ("B200", "bandwidth", 64 * TERA // 8),
        # ROCm MI300X table: Matrix FP16 1307.4, Vector FP64 81.7 TFLOPS; 5.3 TB per second
        ("MI300X", "matrix.fp16", 1_307_400 * GIGA),
        ("MI300X", "vector.fp64", 81_700 * GIGA),
        ("MI300X", "bandwidth", 5_300 * GIGA),
        # L4 datasheet: FP8 Tensor Core 485 teraFLOPs* (sparse), FP32 30.3, 300GB/s
        ("L4", "matrix.fp8", 485 * TERA // 2),
        ("L4", "vector.fp32", 30_300 * GIGA),
        ("L4", "bandwidth", 300 * GIGA),
        # L40S datasheet: BFLOAT16 Tensor Core 362.05 | 733*, FP32 91.6, 864GB/s
        ("L40S", "matrix.bf16", 362_050 * GIGA),
        ("L40S", "bandwidth", 864 * GIGA),
        # Ada whitepaper, RTX 4090: BF16 Tensor with FP32 Accumulate 165.2/330.4, 1008 GB/sec
        ("RTX-4090", "matrix.bf16", 165_200 * GIGA),
        ("RTX-4090", "bandwidth", 1_008 * GIGA),
        # T4 datasheet: Mixed-Precision (FP16/FP32) 65 TFLOPS, INT8 130 TOPS, Single-Precision 8.1
        ("T4", "matrix.fp16", 65 * TERA),
        ("T4", "matrix.int8", 130 * TERA),
        ("T4", "vector.fp32", 8_100 * GIGA),
        # Cloud TPU v5e: 197 TFLOPs (bf16), 393 TOPs (Int8), 819 GBps per chip
        ("TPU-v5e", "matrix.bf16", 197 * TERA),
        ("TPU-v5e", "matrix.int8", 393 * TERA),
        ("TPU-v5e", "bandwidth", 819 * GIGA),
        # Apple: M2 Ultra GPU up to 27.2 teraflops, 800GB/s
        ("M2-Ultra", "vector.fp32", 27_200 * GIGA),
        ("M2-Ultra", "bandwidth", 800 * GIGA),
        # Intel ARK, Xeon Platinum 8480+: 56 cores, 2.00 GHz base, 2 AVX-512 FMA units (8 fp64
        # lanes, 2 FLOP per FMA); 8 channels of DDR5-4800, 8 bytes per transfer
        ("Xeon-Platinum-8480+", "vector.fp64", 56 * 2 * GIGA * 2 * 8 * 2),
        ("Xeon-Platinum-8480+", "vector.fp32", 56 * 2 * GIGA * 2 * 16 * 2),
        ("Xeon-Platinum-8480+", "bandwidth", 8 * 4800 * 10**6 * 8),
    ],
)
def test_figures_are_the_vendors(name, field, expected):
    chip = hardware(name)
    unit, _, dtype = field.partition(".")
    value = chip.peak(dtype, unit) if dtype else getattr(chip, field)
    assert value == expected


# memory as the product names say it (GB = 2**30 bytes, as the vendors' GiB tables spell it):
# A100 80GB / 40GB, H100 80GB, H200 141GB, DGX B200 1,440GB / 8, MI300X 192 GiB, L4 24GB,
# L40S 48GB, RTX 4090 24 GB (24576 MB), T4 16 GB, TPU v5e 16 GiB, M2 Ultra up to 192GB,
# Xeon Platinum 8480+ up to 4 TB
MEMORY_GB = {
    "H100-SXM": 80,
    "H100-PCIe": 80,
    "H200": 141,
    "B200": 180,
    "MI300X": 192,
    "L4": 24,
    "L40S": 48,
    "RTX-4090": 24,
    "T4": 16,
    "TPU-v5e": 16,
    "M2-Ultra": 192,
    "Xeon-Platinum-8480+": 4 * 1024,
}


def test_memory_is_what_the_product_name_says():
    for name in hardwares():
        named = re.search(r"(\d+)GB", name)
        expected = int(named.group(1)) if named else MEMORY_GB[name]
        assert hardware(name).memory == expected * GIB, name
    assert hardware("A100-SXM-80GB").memory == 80 * GIB
    assert hardware("A100-PCIe-40GB").memory == 40 * GIB


def test_figures_are_plausible_against_each_other():
    for chip in chips():
        if chip.kind not in ("gpu", "tpu") or "bf16" not in chip.matrix:
            continue
        fp32 = [t["fp32"] for t in (chip.matrix, chip.vector) if "fp32" in t]
        assert all(chip.matrix["bf16"] >= peak for peak in fp32), chip.name
        # dense tf32 runs at half the rate of bf16 or less: a sparse tf32 would not
        assert chip.matrix.get("tf32", 0) <= chip.matrix["bf16"], chip.name
        # a matrix unit beats the vector units on the same dtype
        for dtype in set(chip.matrix) & set(chip.vector):
            assert chip.matrix[dtype] >= chip.vector[dtype], (chip.name, dtype)
    assert hardware("H100-SXM").bandwidth > hardware("A100-SXM-80GB").bandwidth
    assert hardware("H200").bandwidth > hardware("H100-SXM").bandwidth
    assert hardware("B200").matrix["bf16"] > hardware("H100-SXM").matrix["bf16"]
    assert hardware("A100-PCIe-40GB").bandwidth < hardware("A100-SXM-80GB").bandwidth
    for chip in chips():  # a chip's memory moves slower than its arithmetic
        assert chip.bandwidth < max((*chip.matrix.values(), *chip.vector.values())), chip.name


# --- lookups and their errors ---------------------------------------------------------------------


def test_hardware_matches_names_ignoring_case():
    assert hardware("h100-sxm") is hardware("H100-SXM")
    assert hardware("xeon-platinum-8480+").kind == "cpu"


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownHardwareError) as err:
        hardware("H100")
    message = str(err.value)
    assert "no accelerator named 'H100'" in message and "did you mean" in message
    assert all(name in message for name in hardwares())
    assert isinstance(err.value, KeyError) and isinstance(err.value, LayercostError)


def test_peak_errors_name_the_chip_the_dtype_and_what_it_has():
    h100 = hardware("H100-SXM")
    with pytest.raises(UnknownHardwareError) as err:
        h100.peak("fp32")  # tensor cores take tf32, not fp32
    message = str(err.value)
    assert "H100-SXM" in message and "'fp32'" in message and "matrix peak" in message
    assert "matrix: fp64, tf32, bf16, fp16, fp8, int8" in message
    assert "vector: fp64, fp32, fp16, bf16" in message
    with pytest.raises(UnknownHardwareError, match=r"TPU-v5e has no peak for 'fp64'.*vector: none"):
        hardware("TPU-v5e").peak("fp64", "any")
    with pytest.raises(UnknownHardwareError, match=r"unknown dtype 'float32'.*known dtypes: fp64"):
        h100.peak("float32")
    with pytest.raises(UnknownHardwareError, match="'matrix', 'vector' or 'any'"):
        h100.peak("bf16", "tensor")


def test_peak_any_is_the_faster_of_the_units():
    mi300x = hardware("MI300X")
    assert mi300x.peak("fp64", "any") == mi300x.peak("fp64") > mi300x.peak("fp64", "vector")
    assert hardware("T4").peak("fp32", "any") == hardware("T4").vector["fp32"]


# --- a chip built directly ---------------------------------------------------------------------


def good_chip(**changes):
    fields = {
        "name": "Toy",
        "kind": "gpu",
        "matrix": {"bf16": 100 * TERA},
        "vector": {"fp32": 10 * TERA},
        "bandwidth": 1 * TERA,
        "memory": 16 * GIB,
        "sources": {
            "memory": "m",
            "bandwidth": "b",
            "matrix.bf16": "x",
            "vector.fp32": "y",
        },
    }
    return Chip(**{**fields, **changes})


def test_a_chip_is_frozen_and_checks_itself():
    chip = good_chip()
    with pytest.raises(dataclasses.FrozenInstanceError):
        chip.memory = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        chip.matrix["bf16"] = 1  # type: ignore[index]
    assert chip.to_dict()["matrix"] == {"bf16": 100 * TERA}
    for changes, message in [
        ({"kind": "fpga"}, "kind 'fpga' is not one of"),
        ({"matrix": {"bf16": 1.5e14}}, r"matrix.bf16 = 150000000000000.0 is not a positive"),
        ({"matrix": {"bf16": True}}, "is not a positive integer"),
        ({"bandwidth": 0}, "bandwidth = 0 is not a positive integer"),
        ({"matrix": {"bfloat16": 1}}, "unknown dtype"),
        ({"vector": {"fp32": 1, "fp16": 1}}, r"vector.fp16 has no source"),
        ({"matrix": {}, "vector": {}}, "states no peak"),
    ]:
        with pytest.raises(HardwareError, match=message):
            good_chip(**changes)


# --- broken files, reported at the line that broke ----------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "formulas"  # error messages name the file from its folder on
    folder.mkdir(exist_ok=True)
    path = folder / "hardware.toml"
    path.write_text(text)
    return path


def edit(section: str, old: str, new: str) -> tuple[str, int]:
    """The shipped text with the first line reading ``old`` after the header ``[section]``
    changed to ``new``, and that line's number."""
    lines = SHIPPED.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == f"[{section}]")
    at = next(i for i in range(start, len(lines)) if lines[i].split("#")[0].strip() == old.strip())
    lines[at] = new + "\n"
    return "".join(lines), at + 1


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


def raises_at(path: Path, line: int, message: str) -> None:
    with pytest.raises(CatalogueError) as err:
        load_hardware(path)
    assert str(err.value).startswith(f"formulas/hardware.toml:{line}: "), str(err.value)
    assert message in str(err.value), str(err.value)


def source_line(section: str, key: str) -> str:
    lines = SHIPPED.read_text().splitlines()
    start = lines.index(f"[{section}]")
    return next(line for line in lines[start:] if line.startswith(f"{key} = "))


@pytest.mark.parametrize(
    ("section", "old", "new", "message"),
    [
        ("H100-SXM.matrix", "bf16 = 989_400_000_000_000", "bf16 = 989.4e12", "not a positive"),
        ("H100-SXM.matrix", "bf16 = 989_400_000_000_000", "bf16 = 0", "bf16 = 0 is not a"),
        ("H100-SXM.matrix", "bf16 = 989_400_000_000_000", "bf16 = -1", "not a positive"),
        ("H100-SXM.matrix", "bf16 = 989_400_000_000_000", 'bf16 = "989"', "not a positive"),
        ("H100-SXM.matrix", "bf16 = 989_400_000_000_000", "bfloat16 = 1", "unknown dtype"),
        ("H100-SXM", 'kind = "gpu"', 'kind = "fpga"', "kind 'fpga' is not one of"),
        ("H100-SXM", "bandwidth = 3_350_000_000_000", "bandwith = 3", "unknown field(s)"),
    ],
)
def test_a_broken_value_is_reported_at_its_line(tmp_path, section, old, new, message):
    text, line = edit(section, old, new)
    raises_at(write(tmp_path, text), line, message)


def test_a_number_without_a_source_is_reported_at_the_number(tmp_path):
    # A100-SXM-80GB cites its vector peaks one by one: an fp8 vector peak has no citation
    text, line = edit("A100-SXM-80GB.vector", "fp16 = 78_000_000_000_000", "fp8 = 7")
    raises_at(
        write(tmp_path, text),
        line,
        "A100-SXM-80GB: vector.fp8 has no source (add sources.vector or sources.vector.fp8)",
    )


def test_a_source_for_no_number_is_reported_at_the_source(tmp_path):
    # TPU-v5e has no vector units in the table: citing them is an error
    old = source_line("TPU-v5e.sources", "matrix")
    text, line = edit("TPU-v5e.sources", old, old.replace("matrix = ", "vector = ", 1))
    raises_at(write(tmp_path, text), line, "a source for vector, which the chip does not state")


def test_an_unknown_source_key_is_reported_at_its_line(tmp_path):
    old = source_line("H100-SXM.sources", "memory")
    text, line = edit("H100-SXM.sources", old, old.replace("memory = ", "capacity = ", 1))
    raises_at(write(tmp_path, text), line, "unknown source 'capacity'")


@pytest.mark.parametrize("key", ["bandwidth", "memory"])
def test_a_missing_required_field_is_reported_at_the_chip(tmp_path, key):
    # the missing line cannot be pointed at: the chip's header line is
    old = {"bandwidth": "bandwidth = 3_350_000_000_000", "memory": "memory = 85_899_345_920"}
    text, _ = edit("H100-SXM", old[key], "")
    raises_at(write(tmp_path, text), line_of(text, "[H100-SXM]"), f"H100-SXM: missing {key}")


def test_a_second_chip_of_the_same_name_ignoring_case_is_an_error(tmp_path):
    text = SHIPPED.read_text()
    t4 = text[text.index("[T4]\n") : text.index("# ---", text.index("[T4]\n"))]
    text += "\n" + t4.replace("[T4", "[t4")
    raises_at(write(tmp_path, text), line_of(text, "[t4]"), "a second chip of that name")


def test_invalid_toml_names_the_file_and_line(tmp_path):
    text, line = edit("H100-SXM.matrix", "bf16 = 989_400_000_000_000", "bf16 = = 1")
    with pytest.raises(CatalogueError, match=rf"hardware.toml: invalid TOML: .*line {line}"):
        load_hardware(write(tmp_path, text))


def test_a_user_file_loads(tmp_path):
    path = write(
        tmp_path,
        '[Toy]\nkind = "gpu"\nmemory = 1024\nbandwidth = 10\n[Toy.vector]\nfp32 = 100\n'
        '[Toy.sources]\nmemory = "m"\nbandwidth = "b"\nvector = "v"\n',
    )
    toy = load_hardware(path)["Toy"]
    assert toy.peak("fp32", "vector") == 100 and toy.sources["vector.fp32"] == "v"
    assert "Toy" not in hardwares()  # a user's file is not the shipped table


# --- the command line ----------------------------------------------------------------------------


def test_cli_prints_the_table(capsys):
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in hardwares())
    assert "989.4" in out and "3.35 TB/s" in out and "80 GB" in out
    assert out.strip() == format_hardware_table(chips())
    assert main(["hardware", "h100-sxm", "T4"]) == 0
    out = capsys.readouterr().out
    assert "H100-SXM" in out and "T4" in out and "A100" not in out


def test_cli_json_has_every_field_and_round_trips_the_numbers(capsys):
    assert main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == list(hardwares())
    for name, entry in data.items():
        chip = hardware(name)
        assert entry == chip.to_dict()
        assert entry["matrix"] == dict(chip.matrix) and entry["vector"] == dict(chip.vector)
        assert entry["memory"] == chip.memory and entry["bandwidth"] == chip.bandwidth
        assert set(entry["sources"]) == set(chip.sources)
        assert all(type(v) is int for v in entry["matrix"].values())  # exact in JSON too
    assert data["H100-SXM"]["matrix"]["bf16"] == 989_400_000_000_000


def test_cli_unknown_chip_is_a_clear_error(capsys):
    assert main(["hardware", "H900"]) == 2
    err = capsys.readouterr().err
    assert "no accelerator named 'H900'" in err and "Traceback" not in err


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["hardware", "--help"])
    assert exit_.value.code == 0
    assert "example:\n  layercost hardware" in capsys.readouterr().out


# --- the module stays light ---------------------------------------------------------------------


def test_the_module_imports_only_the_standard_library_and_the_package_reader():
    tree = ast.parse((ROOT / "layercost_sym" / "hardware.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            imported.add("." * node.level + (module if node.level else module.split(".")[0]))
    local = {name for name in imported if name.startswith(".")}
    assert local == {"._toml", ".errors"}
    assert all(name in sys.stdlib_module_names for name in imported - local), imported
    assert set(lc.__all__) >= {"Chip", "hardware", "hardwares", "load_hardware"}
