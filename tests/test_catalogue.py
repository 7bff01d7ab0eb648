"""The loader: the real catalogue loads; every kind of broken file is reported at file:line."""

import textwrap

import pytest

import layercost_sym as lc
from layercost_sym.catalogue import load_catalogue
from layercost_sym.errors import CatalogueError, ConventionError, UnknownRuleError
from layercost_sym.glossary import formulas_dir, glossary, load_glossary

GOOD = """\
[Scale]
module = "Scale"
note = "one multiply per element"
inputs = ["N... C"]
params = "C"
output_shape = ["N...", "C"]

[Scale.bind]
C = "num_features"

[Scale.cost]
exact = "N*C"
macs = "0"
"""


def write(tmp_path, text, name="family.toml"):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_real_catalogue_loads_and_every_rule_is_complete():
    names = lc.rules()
    assert names == sorted(names) and {"Conv2d", "BatchNorm2d", "LeakyReLU", "Linear"} <= set(names)
    for name in names:
        r = lc.rule(name)
        for conv in ("exact", "macs", "torch"):
            assert conv in r.conventions, (name, conv)
        assert r.note and r.source.startswith("formulas/")
        r.params, r.output_shape, r.flops  # noqa: B018 - expansion must not fail


def test_a_good_file_loads(tmp_path):
    cat = load_catalogue(write(tmp_path, GOOD))
    r = cat.rules["Scale"]
    assert str(r.cost("torch")) == "0" and r.family == "family"
    assert r.source == f"{tmp_path.name}/family.toml:1"


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ('exact = "N*C"', 'exact = "N*X"', 12, "unknown symbol 'X'"),
        ('exact = "N*C"', 'exact = "N*"', 12, "cannot parse"),
        ('exact = "N*C"', 'exact = "N.C"', 12, "attribute"),
        ('params = "C"', 'params = "C*H"', 5, "'H' is used but never bound"),
        ('note = "one multiply per element"\n', "", 1, "missing field(s) note"),
        ('C = "num_features"', 'Z = "num_features"', 9, "unknown symbol 'Z'"),
        ('C = "num_features"', 'C = "num_features()"', 9, "cannot read"),
        ('inputs = ["N... C"]', 'inputs = ["N C..."]', 4, "only the first dimension"),
        ('macs = "0"', 'torch = "0"', 13, "derived"),
        ('macs = "0"', 'flopz = "0"', 13, "unknown convention 'flopz'"),
        ('module = "Scale"', 'module = "Scale"\ncolour = "red"', 3, "unknown field"),
        ('exact = "N*C"\n', "", 11, "cost.exact is required"),
    ],
)
def test_broken_rules_are_reported_at_file_and_line(tmp_path, old, new, line, message):
    assert old in GOOD
    write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{tmp_path.name}/family.toml:{line}: rule Scale"), text
    assert message in text


def test_duplicate_rule_names_and_modules(tmp_path):
    write(tmp_path, GOOD, "a.toml")
    write(tmp_path, GOOD, "b.toml")
    with pytest.raises(CatalogueError, match=r"b.toml:1: duplicate rule 'Scale' .*a.toml:1"):
        load_catalogue(tmp_path)
    (tmp_path / "b.toml").write_text(GOOD.replace("[Scale", "[Scale2"))
    with pytest.raises(CatalogueError, match="module 'Scale' already has rule Scale"):
        load_catalogue(tmp_path)


def test_invalid_toml_names_the_line(tmp_path):
    write(tmp_path, GOOD.replace('params = "C"', "params = C"))
    with pytest.raises(CatalogueError, match=r"family.toml: invalid TOML: .*line 5"):
        load_catalogue(tmp_path)


def test_variant_errors(tmp_path):
    bad = GOOD + '\n[Scale.variants.odd]\nunbind = ["C"]\n'
    write(tmp_path, bad)
    with pytest.raises(CatalogueError, match=r"rule Scale\.odd: a variant needs a 'when'"):
        load_catalogue(tmp_path)
    write(tmp_path, GOOD + '\n[Scale.variants.odd]\nwhen = { x = 1 }\nunbind = ["Q"]\n')
    with pytest.raises(CatalogueError, match=r"family.toml:17: rule Scale.odd: unbind: 'Q'"):
        load_catalogue(tmp_path)


def test_glossary_errors(tmp_path):
    path = tmp_path / "symbols.toml"
    path.write_text('[X]\nlatex = "X"\nmeaning = "x"\ndomain = "real"\n')
    with pytest.raises(CatalogueError, match=r"symbols.toml:4: symbol 'X': domain must be"):
        load_glossary(path)
    path.write_text('[X]\nlatex = "X"\n')
    with pytest.raises(CatalogueError, match="missing field 'meaning'"):
        load_glossary(path)
    path.write_text('[k]\nlatex = "k"\nmeaning = "m"\ndomain = "positive"\nsquare = ["k_q"]\n')
    with pytest.raises(CatalogueError, match="square member 'k_q'"):
        load_glossary(path)


def test_glossary_symbols_have_assumptions_latex_and_meaning():
    for name, info in glossary().info.items():
        assert info.symbol.name == name and info.symbol.is_integer
        assert info.symbol.is_nonnegative
        assert bool(info.symbol.is_positive) == (info.domain == "positive")
        assert info.latex and info.meaning


def test_unknown_rule_and_convention_errors_name_the_problem():
    with pytest.raises(UnknownRuleError, match="no rule named 'Conv2D'; did you mean Conv2d"):
        lc.rule("Conv2D")
    with pytest.raises(KeyError):  # callers may catch the builtin
        lc.rule("Nope")
    with pytest.raises(
        ConventionError, match=r"rule ReLU does not define convention 'seed'; it defines: exact"
    ):
        lc.rule("ReLU").cost("seed")
    with pytest.raises(ConventionError, match="unknown convention 'flops'"):
        lc.rule("Linear").cost("flops")


def test_variants_by_name_and_by_module():
    same = lc.rule("Conv2d.same")
    assert same.when == {"padding": "same"} and same in lc.rule("Conv2d").variants
    assert "p_h" not in same.symbols and "p_h" in lc.rule("Conv2d").symbols


def test_torch_is_twice_macs_for_every_rule_and_mode():
    for name in lc.rules():
        r = lc.rule(name)
        for training in (False, True):
            assert r.cost("torch", training) == 2 * r.cost("macs", training)


def test_formulas_dir_is_the_checkout_or_package_copy():
    assert (formulas_dir() / "README.md").is_file()


OVERLAY = """\
[Scale]
note = "thop counts one per element"
cost = "N*C"
training = "3*N*C"

[Scale.variants.odd]
cost = "5*N*C"
"""


def test_convention_files_add_a_convention_to_rules_and_variants(tmp_path):
    variant = '\n[Scale.variants.odd]\nwhen = { odd = true }\ncost = { exact = "2*N*C" }\n'
    write(tmp_path, GOOD + variant)
    (tmp_path / "symbols.toml").write_text((formulas_dir() / "symbols.toml").read_text())
    (tmp_path / "conventions").mkdir()
    (tmp_path / "conventions" / "thop.toml").write_text(OVERLAY)
    rule = load_catalogue(tmp_path).rules["Scale"]
    n_c = lc.parse("N*C")
    assert rule.cost("thop") == n_c and rule.cost("thop", training=True) == 3 * n_c
    assert rule.variants[0].cost("thop") == 5 * n_c
    assert rule.convention_notes == {"thop": "thop counts one per element"}


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ('[Nope]\ncost = "N"\n', "thop", r"conventions/thop.toml:1: no rule named 'Nope'"),
        ('[Scale]\ncost = "N*"\n', "thop", r"conventions/thop.toml:2: Scale.cost: cannot parse"),
        ('[Scale]\nnote = "x"\n', "thop", r"conventions/thop.toml:1: Scale: needs a 'cost'"),
        ('[Scale]\ncost = "N"\ncolour = 1\n', "thop", "unknown field"),
        ('[Scale]\ncost = "N"\n', "torch", "'torch' is not a convention a file may state"),
    ],
)
def test_broken_convention_files_are_reported(tmp_path, text, name, message):
    write(tmp_path, GOOD)
    (tmp_path / "symbols.toml").write_text((formulas_dir() / "symbols.toml").read_text())
    (tmp_path / "conventions").mkdir()
    (tmp_path / "conventions" / f"{name}.toml").write_text(text)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)


def test_convention_entry_for_a_missing_variant_is_an_error(tmp_path):
    write(tmp_path, GOOD)
    (tmp_path / "symbols.toml").write_text((formulas_dir() / "symbols.toml").read_text())
    (tmp_path / "conventions").mkdir()
    (tmp_path / "conventions" / "thop.toml").write_text(OVERLAY)  # names variant "odd"
    with pytest.raises(CatalogueError, match=r"thop.toml:6: rule Scale has no variant 'odd'"):
        load_catalogue(tmp_path)


def test_optional_trailing_dimension_pattern(tmp_path):
    text = GOOD.replace('inputs = ["N... C"]', 'inputs = ["N C L?"]').replace(
        'output_shape = ["N...", "C"]', 'output_shape = ["N", "C", "L?"]'
    )
    write(tmp_path, text.replace('exact = "N*C"', 'exact = "N*C*L"'))
    rule = load_catalogue(tmp_path).rules["Scale"]
    assert rule.inputs[0].trailing == "?" and rule.output_trailing == "?"
    write(tmp_path, GOOD.replace('inputs = ["N... C"]', 'inputs = ["N... C?"]'))
    with pytest.raises(CatalogueError, match="or the last in '\\?' when the first does not"):
        load_catalogue(tmp_path)
