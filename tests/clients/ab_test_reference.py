"""ab_test and ab_sample_size against scipy and statsmodels, through psycopg.

Usage: python ab_test_reference.py PORT   (a tenure server on 127.0.0.1:PORT)

Fixed data sets (seeded) go into tenure; ab_test's figures must equal the reference
libraries' to 1e-9 (relative to the figure's size where it is large). Exits non-zero with
every mismatch listed. tests/experiments.rs runs it; it needs tests/clients/requirements.txt.
"""

import math
import sys

import numpy as np
import psycopg
from scipy import integrate, special, stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

TOLERANCE = 1e-9
failures = []


def close(label, got, want):
    if want is None or (isinstance(want, float) and math.isnan(want)):
        ok = got is None
    else:
        ok = got is not None and abs(got - want) <= TOLERANCE * max(1.0, abs(want))
    if not ok:
        failures.append(f"{label}: tenure {got!r}, reference {want!r}")


def p_beat_beta(a1, b1, a0, b0):
    """P(X > Y), X ~ Beta(a1, b1), Y ~ Beta(a0, b0), by quadrature (independent of
    tenure's closed form), with the closed form as a cross-check."""
    sd = math.sqrt(a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1)))
    mean = a1 / (a1 + b1)
    lo, hi = max(0.0, mean - 40 * sd), min(1.0, mean + 40 * sd)
    quad, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a0, b0),
        lo, hi, points=[mean], epsabs=1e-14, epsrel=1e-13, limit=500,
    )
    closed = sum(
        math.exp(special.betaln(a0 + i, b0 + b1) - math.log(b1 + i)
                 - special.betaln(1 + i, b1) - special.betaln(a0, b0))
        for i in range(int(a1))
    )
    assert abs(quad - closed) < 1e-10, (quad, closed)
    return quad


def check_binary(cur, name, arms):
    """arms: [(arm, n, conversions)], control first."""
    parts = [
        f"SELECT '{arm}' AS arm, g <= {c} AS converted FROM generate_series(1, {n}) AS t(g)"
        for arm, n, c in arms
    ]
    # A NULL outcome and a NULL arm are left out.
    parts.append("SELECT 'control', CAST(NULL AS BOOLEAN)")
    parts.append("SELECT CAST(NULL AS TEXT), true")
    cur.execute(f"CREATE TABLE {name} AS " + " UNION ALL ".join(parts))
    cur.execute(f"SELECT * FROM ab_test('SELECT arm, converted FROM {name}')")
    rows = {r[0]: r for r in cur.fetchall()}
    _, n0, c0 = arms[0]
    for arm, n1, c1 in arms:
        row = rows[arm]
        if row[1] != n1:
            failures.append(f"{name}/{arm}: n {row[1]} != {n1}")
        close(f"{name}/{arm} mean", row[2], c1 / n1)
        if arm == "control":
            continue
        _, p = proportions_ztest([c1, c0], [n1, n0])
        low, high = confint_proportions_2indep(c1, n1, c0, n0, method="wald", compare="diff")
        close(f"{name}/{arm} difference", row[3], c1 / n1 - c0 / n0)
        close(f"{name}/{arm} ci_low", row[4], low)
        close(f"{name}/{arm} ci_high", row[5], high)
        close(f"{name}/{arm} relative_lift", row[6], (c1 / n1) / (c0 / n0) - 1)
        close(f"{name}/{arm} p_value", row[7], p)
        close(f"{name}/{arm} p_beat_control", row[8],
              p_beat_beta(1 + c1, 1 + n1 - c1, 1 + c0, 1 + n0 - c0))
        if row[9] != "two-proportion z-test":
            failures.append(f"{name}/{arm}: test {row[9]!r}")


def check_numeric(cur, name, arms):
    """arms: [(arm, values)], control first."""
    cur.execute(f"CREATE TABLE {name} (arm TEXT, revenue DOUBLE PRECISION)")
    with cur.copy(f"COPY {name} (arm, revenue) FROM STDIN") as copy:
        for arm, values in arms:
            for v in values:
                copy.write_row((arm, repr(float(v))))
    cur.execute(f"SELECT * FROM ab_test('SELECT arm, revenue FROM {name}')")
    rows = {r[0]: r for r in cur.fetchall()}
    control = np.asarray(arms[0][1])
    for arm, values in arms:
        values = np.asarray(values)
        row = rows[arm]
        close(f"{name}/{arm} mean", row[2], float(values.mean()))
        if arm == "control":
            continue
        result = stats.ttest_ind(values, control, equal_var=False)
        ci = result.confidence_interval(0.95)
        difference = values.mean() - control.mean()
        se = math.sqrt(values.var(ddof=1) / len(values) + control.var(ddof=1) / len(control))
        close(f"{name}/{arm} difference", row[3], float(difference))
        close(f"{name}/{arm} ci_low", row[4], float(ci.low))
        close(f"{name}/{arm} ci_high", row[5], float(ci.high))
        close(f"{name}/{arm} relative_lift", row[6], float(difference / control.mean()))
        close(f"{name}/{arm} p_value", row[7], float(result.pvalue))
        close(f"{name}/{arm} p_beat_control", row[8], float(stats.norm.cdf(difference / se)))
        if row[9] != "Welch t-test":
            failures.append(f"{name}/{arm}: test {row[9]!r}")


def check_sample_sizes(cur):
    plans = [(0.10, 0.02, 0.05, 0.8), (0.10, -0.02, 0.05, 0.8), (0.03, 0.005, 0.01, 0.9),
             (0.5, 0.1, 0.1, 0.7), (0.2, 0.01, 0.05, 0.95)]
    for baseline, effect, alpha, power in plans:
        cur.execute("SELECT ab_sample_size(%s, %s, %s, %s)", (baseline, effect, alpha, power))
        (got,) = cur.fetchone()
        h = proportion_effectsize(baseline + effect, baseline)
        want = NormalIndPower().solve_power(
            effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided")
        # statsmodels solves with brentq to about 1e-12 relative; 1e-9 is the check.
        close(f"ab_sample_size{(baseline, effect, alpha, power)}", got, float(want))
    cur.execute("SELECT ab_sample_size(0.10, 0.02)")
    close("ab_sample_size defaults", cur.fetchone()[0],
          float(NormalIndPower().solve_power(proportion_effectsize(0.12, 0.10),
                                             alpha=0.05, power=0.8, ratio=1.0)))


def main():
    port = int(sys.argv[1])
    rng = np.random.default_rng(20261207)
    with psycopg.connect(f"host=127.0.0.1 port={port} user=tenure dbname=tenure",
                         autocommit=True) as conn:
        cur = conn.cursor()
        check_binary(cur, "winback", [("control", 1000, 100), ("coupon", 1000, 131),
                                      ("call", 987, 95)])
        check_binary(cur, "signup", [("control", 25000, 2210), ("new_page", 24800, 2301)])
        check_numeric(cur, "basket", [
            ("control", rng.lognormal(3.0, 0.8, 400)),
            ("free_shipping", rng.lognormal(3.1, 0.9, 380)),
            ("bundle", rng.lognormal(2.95, 0.7, 35)),
        ])
        check_sample_sizes(cur)
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("ab_test and ab_sample_size match scipy and statsmodels")


main()
