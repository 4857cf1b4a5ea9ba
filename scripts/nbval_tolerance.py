"""A pytest plugin for scripts/build_course.py: nbval's comparison, with a tolerance for numbers.

nbval compares a marked cell's output with its reference character by character.
That is right for what every machine computes alike: shapes, counts, split
indices, the checks' verdicts, worked examples, the stored results read back.
It is wrong for a number that comes out of training a network or out of a long
floating-point sum: the CPU's make, its instruction set and the number of
threads change the order of the sums, hence the last bits, and a network
trained for many steps carries that difference into its accuracy. Such a
number is reproducible on one machine, not across machines.

So a marked cell says which kind of output it is, with a comment line beside
nbval's marker:

    # NBVAL_CHECK_OUTPUT
    # NBVAL_TOLERANCE percent

Without that line the comparison stays exact. With it, the output must read
the same once its numbers are taken out (whitespace runs count as one space,
since a table pads its columns to the widest number), and each number must
lie within the kind's tolerance of the reference's number at the same place.
When every number does, the reference is what nbval compares against, so the
cell passes; otherwise nbval reports the difference, and this plugin adds which
numbers were out of tolerance. The kinds, with their widths and why, are
TOLERANCES below: the one place where a width is chosen.

The outputs that nbval_record keeps for the book are this run's, untouched.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from nbval.plugin import IPyNbCell

DECLARATION = "# NBVAL_TOLERANCE"


@dataclass(frozen=True)
class Tolerance:
    """How far a number may be from its reference: at most ``absolute``, or
    ``relative`` times the reference's size, whichever is larger."""

    absolute: float
    relative: float
    why: str

    def allows(self, now: float, stored: float) -> bool:
        return abs(now - stored) <= max(self.absolute, self.relative * abs(stored)) + 1e-9

    def __str__(self) -> str:
        widths = [f"{self.absolute:g}"] if self.absolute else []
        widths += [f"{self.relative:.0%} of the reference"] if self.relative else []
        return "±" + " or ".join(widths)


# The widths were measured on the course itself: its references (a clean run of
# every lecture and instructor notebook on an Intel Xeon with one thread)
# against runs on an AMD EPYC with two threads (the references stored before),
# on the Xeon with two threads, and on the Xeon with ATEN_CPU_CAPABILITY=default
# (torch's CPU kernels without their vector instructions).
TOLERANCES = {
    "percent": Tolerance(
        absolute=5.0,
        relative=0.0,
        why=(
            "accuracies and AUROCs in percent of a network trained in the notebook, on a few "
            "hundred to a few thousand test images: they moved by up to 1.4 points (Lecture 6's "
            "magnetic tiles); 5 points passes that and still fails a swapped label (an AUROC of "
            "85 becomes 15) or a training that does not learn (an accuracy of 99 becomes 10 to 90)"
        ),
    ),
    "under-attack": Tolerance(
        absolute=10.0,
        relative=0.0,
        why=(
            "accuracies, AUROCs and counts of images under an attack, which change faster with "
            "the network's weights than its clean accuracy: they moved by up to 4 points "
            "(Exercise 2's FGSM at eps 0.2; Lecture 2's count of 50 attacked digits by 3); 10 "
            "points passes that and still fails a broken attack (it leaves the clean accuracy) "
            "or a wrong eps"
        ),
    ),
    "breaking-point": Tolerance(
        absolute=20.0,
        relative=0.0,
        why=(
            "the accuracy of a standard network under an attack at the eps where it breaks, where "
            "accuracy falls fastest (Lecture 3's PGD at eps 0.1 on 200 digits): it read 57.5 on "
            "the AMD EPYC, 49.5 with one thread and 59.5 without vector instructions; 20 points "
            "passes that and still fails a broken attack (98, the clean accuracy) or an eps of "
            "0.3 (0)"
        ),
    ),
    "relative": Tolerance(
        absolute=0.0,
        relative=0.1,
        why=(
            "distances, errors, thresholds and F1 scores of a network trained in the notebook, "
            "whatever their scale: those of the course's multilayer perceptrons printed the same "
            "digits in every configuration measured, but a CPU with other matrix kernels (an ARM "
            "laptop, say) sums in another order too; a tenth of the number is far more than "
            "that and still fails a method that does something else, which changes them by a "
            "factor"
        ),
    ),
}

# A number: digits with an optional decimal part, not glued to a word (so the
# 7 of "ex07a" or the digits of a hash are text) and with an optional minus sign.
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def declared_tolerance(source: str) -> Tolerance | None:
    """The tolerance a cell declares, None when it declares none (exact).
    An unknown kind is an error that lists the known ones."""
    for line in source.splitlines():
        line = line.strip()
        if line.startswith(DECLARATION):
            kind = line[len(DECLARATION) :].strip()
            if kind not in TOLERANCES:
                raise ValueError(
                    f"unknown tolerance {kind!r} in {line!r}; the kinds are {', '.join(TOLERANCES)} "
                    "(scripts/nbval_tolerance.py)"
                )
            return TOLERANCES[kind]
    return None


def skeleton(text: str) -> tuple[str, list[str]]:
    """The text with each number replaced by '#' and whitespace runs by one
    space, and the numbers in order."""
    numbers = NUMBER.findall(text)
    return re.sub(r"\s+", " ", NUMBER.sub("#", text)).strip(), numbers


def numbers_out_of_tolerance(now: str, stored: str, tolerance: Tolerance) -> list[tuple[str, str]] | None:
    """The (now, stored) pairs of numbers that differ by more than the tolerance;
    None when the two texts differ in more than their numbers."""
    now_text, now_numbers = skeleton(now)
    stored_text, stored_numbers = skeleton(stored)
    if now_text != stored_text or len(now_numbers) != len(stored_numbers):
        return None
    return [(a, b) for a, b in zip(now_numbers, stored_numbers) if not tolerance.allows(float(a), float(b))]


def output_texts(output) -> dict[str, str]:
    """An output's texts by the key nbval compares them under (the stream's name, or the MIME type)."""
    if output.get("output_type") == "stream":
        return {output["name"]: output["text"]}
    return {mime: value for mime, value in output.get("data", {}).items() if isinstance(value, str)}


def within_tolerance(test: list, ref: list, tolerance: Tolerance) -> tuple[list, list[str]]:
    """A copy of the test outputs in which each text whose numbers are all within
    the tolerance of its reference is replaced by the reference; and a line for
    each text that has a number out of tolerance. Texts are paired as nbval
    pairs them: the n-th text of each key with the reference's n-th."""
    stored: dict[str, list[str]] = {}
    for output in ref:
        for key, text in output_texts(output).items():
            stored.setdefault(key, []).append(text)
    seen: dict[str, int] = {}
    test, problems = copy.deepcopy(test), []
    for output in test:
        for key, text in output_texts(output).items():
            index = seen[key] = seen.get(key, -1) + 1
            if index >= len(stored.get(key, [])) or text == stored[key][index]:
                continue
            beyond = numbers_out_of_tolerance(text, stored[key][index], tolerance)
            if beyond == []:
                if output.get("output_type") == "stream":
                    output["text"] = stored[key][index]
                else:
                    output["data"][key] = stored[key][index]
            elif beyond:
                pairs = ", ".join(f"{a} (reference {b})" for a, b in beyond)
                problems.append(f"{key}: numbers beyond the tolerance ({tolerance}): {pairs}")
    return test, problems


def pytest_configure(config) -> None:
    exact_comparison = IPyNbCell.compare_outputs
    if getattr(exact_comparison, "with_tolerance", False):
        return  # already in place (pytest run twice in one process)

    def compare_outputs(cell: IPyNbCell, test, ref, skip_compare=None) -> bool:
        tolerance = declared_tolerance(cell.cell.source)
        if tolerance is None:
            return exact_comparison(cell, test, ref, skip_compare)
        test, problems = within_tolerance(test, ref, tolerance)
        same = exact_comparison(cell, test, ref, skip_compare)
        if not same:
            cell.comparison_traceback.extend(problems)
        return same

    compare_outputs.with_tolerance = True
    IPyNbCell.compare_outputs = compare_outputs
