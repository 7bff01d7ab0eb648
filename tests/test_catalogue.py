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

[Scale.flops]
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
        ('inputs = ["N... C"]', 'inputs = ["N H... C"]', 4, "only the first dimension"),
        ('macs = "0"', 'torch = "0"', 13, "derived"),
        ('macs = "0"', 'flopz = "0"', 13, "unknown convention 'flopz'"),
        ('module = "Scale"', 'module = "Scale"\ncolour = "red"', 3, "unknown field"),
        ('exact = "N*C"\n', "", 11, "flops.exact is required"),
        (
            'params = "C"',
            'params = "C"\nconstraints = [{ check = "C >= 2", quantities = ["flopz"] }]',
            6,
            "quantities must be a non-empty list of",
        ),
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
        ConventionError,
        match=r"rule ReLU does not define flops under convention 'seed'; it defines: exact",
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
flops = "N*C"
training = "3*N*C"

[Scale.variants.odd]
flops = "5*N*C"
"""


def test_convention_files_add_a_convention_to_rules_and_variants(tmp_path):
    variant = '\n[Scale.variants.odd]\nwhen = { odd = true }\nflops = { exact = "2*N*C" }\n'
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
        ('[Nope]\nflops = "N"\n', "thop", r"conventions/thop.toml:1: no rule named 'Nope'"),
        ('[Scale]\nflops = "N*"\n', "thop", r"conventions/thop.toml:2: Scale.flops: cannot parse"),
        ('[Scale]\nnote = "x"\n', "thop", r"conventions/thop.toml:1: Scale: needs a 'flops'"),
        ('[Scale]\nflops = "N"\ncolour = 1\n', "thop", "unknown field"),
        ('[Scale]\nflops = "N"\n', "torch", "'torch' is not a convention a file may state"),
        (
            '[Scale]\nflops = "N"\nwhole_factors_only = "yes"\n',
            "thop",
            r"conventions/thop.toml:3: Scale.whole_factors_only: must be true or false",
        ),
    ],
)
def test_broken_convention_files_are_reported(tmp_path, text, name, message):
    write(tmp_path, GOOD)
    (tmp_path / "symbols.toml").write_text((formulas_dir() / "symbols.toml").read_text())
    (tmp_path / "conventions").mkdir()
    (tmp_path / "conventions" / f"{name}.toml").write_text(text)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)


def test_whole_factors_only_is_read_per_variant_with_the_rule_as_default(tmp_path):
    variant = '\n[Scale.variants.odd]\nwhen = { odd = true }\nflops = { exact = "2*N*C" }\n'
    write(tmp_path, GOOD + variant)
    (tmp_path / "symbols.toml").write_text((formulas_dir() / "symbols.toml").read_text())
    (tmp_path / "conventions").mkdir()
    overlay = '[Scale]\nflops = "N"\nwhole_factors_only = true\n'
    (tmp_path / "conventions" / "thop.toml").write_text(overlay)
    rule = load_catalogue(tmp_path).rules["Scale"]
    assert rule.whole_factor_conventions == rule.variants[0].whole_factor_conventions == {"thop"}
    overlay += '[Scale.variants.odd]\nflops = "N"\nwhole_factors_only = false\n'
    (tmp_path / "conventions" / "thop.toml").write_text(overlay)
    rule = load_catalogue(tmp_path).rules["Scale"]
    assert (
        rule.whole_factor_conventions == {"thop"} and not rule.variants[0].whole_factor_conventions
    )


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
    with pytest.raises(
        CatalogueError, match=r"or the last in '\?' or '\.\.\.' when the first does not"
    ):
        load_catalogue(tmp_path)


# -- variants chosen by input rank or by an attribute being None; data-dependent symbols ----------

RANKED = (
    GOOD
    + """
[Scale.variants.flat]
when = { "rank(0)" = [1, 2], "weight?" = false }
inputs = ["C"]
output_shape = ["C"]
flops = { exact = "C" }

[Scale.variants.weighted]
when = { "weight?" = true }
flops = { exact = "2*N*C" }
"""
)


def test_when_by_input_rank_and_by_none(tmp_path):
    cat = load_catalogue(write(tmp_path, RANKED))
    plain, weighted = (type("Scale", (), {"num_features": 3, "weight": w})() for w in (None, 1))
    assert cat.for_module(plain, [(3,)]).name == "Scale.flat"  # rank 1 is in [1, 2]
    assert cat.for_module(plain, [(2, 5, 3)]).name == "Scale"  # rank 3 is not
    assert cat.for_module(plain).name == "Scale"  # without the inputs the rank is unknown
    assert cat.for_module(weighted, [(3,)]).name == "Scale.weighted"  # weight is not None


def test_when_by_bounds_on_a_number(tmp_path):
    text = RANKED.replace(
        'when = { "weight?" = true }', "when = { num_features = { ge = 4, lt = 8 } }"
    )
    cat = load_catalogue(write(tmp_path, text))
    for features, name in [
        (3, "Scale"),
        (4, "Scale.weighted"),
        (7.5, "Scale.weighted"),
        (8, "Scale"),
    ]:
        module = type("Scale", (), {"num_features": features, "weight": 1})()
        assert cat.for_module(module).name == name, features
    # not a number (a bool is not one either): no bound holds
    for odd in ("5", True, None):
        assert (
            cat.for_module(type("Scale", (), {"num_features": odd, "weight": 1})()).name == "Scale"
        )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"rank(0)" = [1, 2]', '"rank(0)" = "two"', "takes a rank or a list of ranks"),
        ('"weight?" = false', '"weight?" = 0', "takes true (not None) or false (None)"),
        ('"rank(0)" = [1, 2]', '"rank(1)" = 2', "names an input the variant does not take"),
        ('"rank(0)" = [1, 2]', '"rank 0" = 2', "cannot read key 'rank 0'"),
        ('"weight?" = false', "num_features = { below = 3 }", "takes a table of bounds"),
        ('"weight?" = false', 'num_features = { lt = "3" }', "takes a table of bounds"),
        ('"weight?" = false', "num_features = {}", "takes a table of bounds"),
    ],
)
def test_broken_when_keys_are_reported_at_file_and_line(tmp_path, old, new, message):
    assert old in RANKED
    write(tmp_path, RANKED.replace(old, new))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{tmp_path.name}/family.toml:16: rule Scale.flat: when"), text
    assert message in text


DATA = (
    GOOD.replace('exact = "N*C"', 'exact = "N*C + V_d*(C + 1)"')
    + """
[Scale.data]
V_d = "Min(N, C)"
V_r = "V_d"
"""
)


def test_data_symbols_load_with_defaults_in_order(tmp_path):
    rule = load_catalogue(write(tmp_path, DATA)).rules["Scale"]
    defaults = {s.name: str(e) for s, e in rule.data_defaults().items()}
    assert defaults == {"V_d": "Min(C, N)", "V_r": "Min(C, N)"}
    assert "V_d" in rule.symbols


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ('V_d = "Min(N, C)"', 'Z = "Min(N, C)"', 16, "data: 'Z' is not a glossary symbol"),
        ('V_d = "Min(N, C)"', 'C = "Min(N, C)"', 16, "data: 'C' is also bound or defined"),
        ('V_d = "Min(N, C)"', 'V_d = "Min(N, H)"', 16, "default uses H, which nothing binds"),
        ('V_r = "V_d"', 'V_r = "V_d"\nV_x = 1', 18, "data: 'V_x' is not a glossary symbol"),
        ('V_d = "Min(N, C)"\nV_r = "V_d"', 'V_r = "V_d"\nV_d = "N"', 16, "default uses V_d"),
    ],
)
def test_broken_data_tables_are_reported_at_file_and_line(tmp_path, old, new, line, message):
    assert old in DATA
    write(tmp_path, DATA.replace(old, new))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    text = str(info.value)
    assert text.startswith(f"{tmp_path.name}/family.toml:{line}: rule Scale"), text
    assert message in text


def test_unbind_drops_a_definition_too(tmp_path):
    base = GOOD.replace('exact = "N*C"', 'exact = "N*C*H_out"')
    base += '\n[Scale.define]\nH_out = "2*C"\n'
    variant = '\n[Scale.variants.v]\nwhen = { x = 1 }\ninputs = ["N... C H_out"]\n'
    variant += 'unbind = ["H_out"]\n'
    rule = load_catalogue(write(tmp_path, base + variant)).rules["Scale"].variants[0]
    assert str(rule.flops) == "C*H_out*N" and rule.defines == {}
    redefined = variant + 'define = { H_out = "C" }\n'
    write(tmp_path, base + redefined)
    with pytest.raises(CatalogueError, match="unbind: 'H_out' is dropped and redefined"):
        load_catalogue(tmp_path)


def test_arg_given_bind_spec(tmp_path):
    text = GOOD.replace('C = "num_features"', 'C = "num_features"\nb = "arg(weights)?"')
    rule = load_catalogue(write(tmp_path, text.replace('"N*C"', '"N*C*(1 + b)"'))).rules["Scale"]
    spec = rule.binds["b"]
    assert (spec.kind, spec.attr) == ("arg_given", "weights")
    from layercost_sym.reading import read_spec as _read

    assert _read(None, spec, "b", rule, {"weights": object()}, []) == 1
    assert _read(None, spec, "b", rule, {"weights": None}, []) == 0
    assert _read(None, spec, "b", rule, {}, []) == 0


def test_trailing_variadic_pattern(tmp_path):
    text = GOOD.replace('inputs = ["N... C"]', 'inputs = ["N C P..."]').replace(
        'output_shape = ["N...", "C"]', 'output_shape = ["N", "C", "P..."]'
    )
    write(tmp_path, text.replace('exact = "N*C"', 'exact = "N*C*P"'))
    rule = load_catalogue(tmp_path).rules["Scale"]
    assert rule.inputs[0].trailing == "..." and rule.output_trailing == "..."
    assert rule.inputs[0].describe() == "(N, C, *)"
    write(tmp_path, text.replace('"P..."]', '"P?"]').replace('"N*C"', '"N*C*P"'))
    with pytest.raises(CatalogueError, match="ends with '\\?' but inputs\\[0\\] has no optional"):
        load_catalogue(tmp_path)
    write(tmp_path, GOOD.replace('inputs = ["N... C"]', 'inputs = ["N... C P..."]'))
    with pytest.raises(
        CatalogueError, match=r"family.toml:4: .*only the first dimension may end in '\.\.\.'"
    ):
        load_catalogue(tmp_path)


def test_optional_inner_dimension_pattern(tmp_path):
    text = GOOD.replace('inputs = ["N... C"]', 'inputs = ["L N? C"]').replace(
        'output_shape = ["N...", "C"]', 'output_shape = ["L", "N?", "C"]'
    )
    write(tmp_path, text.replace('exact = "N*C"', 'exact = "L*N*C"'))
    rule = load_catalogue(tmp_path).rules["Scale"]
    assert rule.inputs[0].middle == 1 and rule.output_middle == 1
    write(tmp_path, text.replace('"L N? C"', '"L? N? C"'))
    with pytest.raises(CatalogueError, match=r"family.toml:4: .*or one other in '\?' \('N\?'\)"):
        load_catalogue(tmp_path)
    write(tmp_path, text.replace('"L N? C"', '"L N C"'))
    with pytest.raises(CatalogueError, match="has no optional inner dimension"):
        load_catalogue(tmp_path)


def test_anchored_patterns(tmp_path):
    text = GOOD.replace('inputs = ["N... C"]', 'inputs = ["N... C@dim P..."]').replace(
        'output_shape = ["N...", "C"]', 'output_shape = ["N...", "P..."]'
    )
    write(tmp_path, text.replace('"N*C"', '"N*C*P"').replace('C = "num_features"', "C = 1"))
    (pattern,) = load_catalogue(tmp_path).rules["Scale"].inputs
    assert (pattern.names, pattern.anchor) == (("N", "C", "P"), "dim")
    write(tmp_path, text.replace('"N... C@dim P..."', '"N... C@start:end P..."'))
    (pattern,) = load_catalogue(tmp_path).rules["Scale"].inputs
    assert pattern.anchor == "start:end" and "dimensions start:end" in pattern.describe()
    write(tmp_path, text.replace('"N... C@dim P..."', '"N C@dim P..."'))
    with pytest.raises(CatalogueError, match=r"family.toml:4: .*an anchored pattern is"):
        load_catalogue(tmp_path)
    write(tmp_path, text.replace('"N... C@dim P..."', '"N... Zz@dim P..."'))
    with pytest.raises(CatalogueError, match="unknown symbol 'Zz'"):
        load_catalogue(tmp_path)


def test_scaled_bind_spec(tmp_path):
    # scaled(X, attr[i]): X must be a dimension of the rule's inputs
    text = GOOD.replace('inputs = ["N... C"]', 'inputs = ["N C H"]').replace(
        'output_shape = ["N...", "C"]', 'output_shape = ["N", "C", "H_out"]'
    )
    text = text.replace('C = "num_features"', 'H_out = "scaled(H, scale[1])"')
    rule = load_catalogue(write(tmp_path, text)).rules["Scale"]
    spec = rule.binds["H_out"]
    assert (spec.kind, spec.of, spec.attr, spec.index) == ("scaled", "H", "scale", 1)
    write(tmp_path, text.replace("scaled(H,", "scaled(W,"))
    with pytest.raises(CatalogueError, match=r"bind.H_out: 'W' in .* not a symbol of the inputs"):
        load_catalogue(tmp_path)
    write(tmp_path, text.replace("scaled(H, scale[1])", "scaled(H)"))
    with pytest.raises(CatalogueError, match="cannot read 'scaled\\(H\\)'"):
        load_catalogue(tmp_path)


def test_len_when_key_and_view_size_spec(tmp_path, monkeypatch):
    # a variant per number of sizes; view_size infers a -1 entry from the split dimension
    split = (
        '\n[Scale.variants.two]\nwhen = { "len(sizes)" = 2 }\n'
        'bind = { H = "view_size(sizes[0], dim)", W = "view_size(sizes[1], dim)" }\n'
        'output_shape = ["N...", "H", "W"]\n'
    )
    write(tmp_path, GOOD + split)
    rule = load_catalogue(tmp_path).rules["Scale"]
    two = rule.variants[0]
    assert two.when == {"len(sizes)": 2} and two.binds["W"].kind == "view_size"

    class Scale:  # duck-typed, named as the rule's module: what the lookup reads
        num_features, dim = 6, -1

        def __init__(self, sizes):
            self.sizes = sizes

    cat = load_catalogue(tmp_path)
    assert cat.for_module(Scale((2, 3))) is cat.rules["Scale"].variants[0]
    assert cat.for_module(Scale((1, 2, 3))) is cat.rules["Scale"]  # no variant for 3 sizes
    monkeypatch.setattr("layercost_sym.binding.catalogue", lambda: cat)
    b = lc.bind(Scale((2, -1)), (4, 6))
    assert (b["H"], b["W"]) == (2, 3) and b.output_shape() == (4, 2, 3)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ('when = { "len(sizes)" = "two" }', "takes a length or a list of lengths"),
        ('when = { x = 1 }\nbind = { C = "view_size(sizes, dim)" }', "cannot read"),
    ],
)
def test_len_when_key_and_view_size_errors(tmp_path, variant, message):
    write(tmp_path, GOOD + f"\n[Scale.variants.two]\n{variant}\n")
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)


def test_a_convention_otherwise_another_takes_its_value_where_a_rule_is_silent(tmp_path):
    from layercost_sym._toml import SourceFile
    from layercost_sym.quantities import _read

    flops = lc.quantity("flops")
    assert flops.otherwise == {"useful": "exact"}
    # a rule that states useful keeps its own (causal attention), one that does not has exact
    sdpa = lc.rule("scaled_dot_product_attention")
    assert sdpa.cost("useful") != sdpa.cost("exact")
    assert lc.rule("Conv2d").cost("useful") == lc.rule("Conv2d").cost("exact")
    text = """\
[q]
meaning = "m"
default = "a"
[q.conventions.a]
meaning = "m"
[q.conventions.b]
meaning = "m"
otherwise = "c"
"""
    (tmp_path / "quantities.toml").write_text(text)
    with pytest.raises(CatalogueError, match=r"quantities.toml:8: .*otherwise names another"):
        _read(SourceFile(tmp_path / "quantities.toml"))
