"""Plain text for people (layercost_sym/text.py): clipped notes, expressions with like terms
collected and the largest first, shortened to a width."""

import pytest
import sympy

import layercost_sym as lc
from layercost_sym.parsing import parse
from layercost_sym.text import clip, collected, shortened

D, L, F, V, T, N = lc.symbols("d_model n_layer d_ff vocab n_ctx N")
NAMES = {s.name: s for s in (D, L, F, V, T, N)}


def test_clip_cuts_at_a_word_and_says_so():
    assert clip("short note", 70) == "short note"
    assert clip("a  note\n  over   lines", 70) == "a note over lines"  # whitespace runs: one space
    text = "exact follows torch's decomposition where(x > 0, x, alpha * expm1(x / alpha))"
    cut = clip(text, 40)
    assert len(cut) <= 40 and cut.endswith("...")
    kept = cut.removesuffix("...")
    assert text.startswith(kept) and text[len(kept)] == " "  # the cut falls between words
    assert clip("averyveryverylongword and more", 10) == "averyve..."  # no space to cut at


def _degree(term: sympy.Expr) -> int:
    return sum(sympy.degree_list(term, *NAMES.values()))


def test_collected_combines_like_terms_largest_powers_first():
    # two blocks written per block, as the zoo composes them: like terms apart
    uncollected = L * (D**2 + D) + L * (3 * D**2 + 3 * D) + L * (F * D + F) + D * V + 2 * D
    text = collected(uncollected)
    assert "n_layer*(" not in text  # the per-block sums are multiplied out and combined
    assert parse(text, NAMES) == sympy.expand(uncollected)
    terms = text.split(" + ")
    degrees = [_degree(parse(t, NAMES)) for t in terms]
    assert degrees == sorted(degrees, reverse=True)  # 3, 3, 2, ..., 1
    assert terms[0] in ("d_ff*d_model*n_layer", "4*d_model**2*n_layer")


def test_collected_takes_out_the_common_factor_and_keeps_signs():
    cost = N * T * (4 * L * D**2 - L * D) + N * T * V
    text = collected(cost)
    assert text.startswith("N*n_ctx*(")
    assert " - d_model*n_layer" in text
    assert sympy.expand(parse(text, NAMES) - cost) == 0


def test_sizes_order_terms_of_one_degree_by_their_value():
    e = 2 * D * V + T * L  # degree 2 both; at GPT-2's sizes d*vocab is the larger
    assert collected(e, {D: 768, V: 50257, T: 1024, L: 12}) == "2*d_model*vocab + n_ctx*n_layer"
    assert collected(e, {D: 768, V: 10, T: 1024, L: 100}) == "n_ctx*n_layer + 2*d_model*vocab"


def test_floors_keep_their_products_and_read_back():
    r = lc.symbols("resolution")
    side = sympy.floor(r / 32 - sympy.Rational(1, 32)) + 1
    e = N * (7 * side**2 + 3) + 11
    text = collected(e)
    assert "(floor(resolution/32 - 1/32) + 1)**2" in text  # a power of a side stays whole
    assert sympy.expand(parse(text, {"N": N, "resolution": r}) - e) == 0


@pytest.mark.parametrize("width", [30, 45, 60, 80])
def test_shortened_keeps_leading_terms_and_counts_the_rest(width):
    e = sympy.expand(N * T * (7 * L * D**2 + 5 * L * D * F + 3 * D * V + 2 * D * T * L + D + 9))
    text = shortened(e, width)
    assert len(text) <= width
    full = collected(e)
    if text.startswith("..."):  # not even the first term fits: the size instead
        assert text == f"... (6 terms, {len(full)} characters)"
    elif text != full:
        shown = text.split(" + ...")[0]
        assert full.startswith(shown)  # the leading terms, exactly as in the full form
        assert text.endswith("more terms))")


def test_shortened_names_the_size_when_no_term_fits():
    big = sympy.Max(8, 8 * sympy.floor(D / 3 + sympy.Rational(1, 2))) ** 2 * (T + 1) * N
    text = shortened(big + N, 20)
    assert len(text) <= 20 or text.startswith("...")
    assert "terms" in text and str(len(collected(big + N))) in text


def test_short_expressions_are_left_whole():
    assert shortened(D * V, 60) == "d_model*vocab"
    assert shortened(sympy.Integer(124439808), 60) == "124439808"
