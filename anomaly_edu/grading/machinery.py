"""What every exercise check shares: calling the student's function, turning a
leftover stub into "not done yet", refusing an answer that calls the package's
own version of what it re-creates, and the one-line confirmation."""

from __future__ import annotations

__lecture__ = 1

import dis
import sys
import types


class NotDone(AssertionError):
    pass


def call_student(task: str, fn, *args):
    """Call the student's function, turning a leftover stub or a missing
    ``return`` into clear feedback."""
    try:
        result = fn(*args)
    except NotImplementedError:
        raise NotDone(
            f"{task} is not done yet: replace the line that raises NotImplementedError "
            f"with your code, run that cell, then run this check again."
        ) from None
    if result is None:
        raise AssertionError(f"{task}: your function returned None; did you forget `return`?")
    return result


def call_with_feedback(task: str, where: str, hint, fn, *args, call=call_student, accept=None):
    """Call the student's function through ``call`` (:func:`call_student`, or a
    variant that also watches the call), turning an exception it raises into
    feedback: ``where``, the exception, then ``hint``, the text that follows the
    exception's message (or a function of the exception that returns that text).
    An exception for which ``accept(err)`` holds is returned instead, for the
    check to read: the check wanted the function to refuse its input."""
    try:
        return call(task, fn, *args)
    except AssertionError:  # the check's own feedback: a stub left in place, no return
        raise
    except Exception as err:
        if accept is not None and accept(err):
            return err
        text = hint(err) if callable(hint) else hint
        raise AssertionError(f"{task}: {where} your function raised {type(err).__name__}: {err}{text}") from None


def passed(task: str, detail: str = "") -> None:
    print(f"✓ {task}: correct. {detail}".rstrip())


def package_function(frame) -> str | None:
    """``module.name`` of the function running in ``frame`` when it belongs to
    the anomaly_edu package (the grading package's own small models excepted)."""
    module = frame.f_globals.get("__name__") if frame is not None else None
    if not isinstance(module, str) or module == __package__ or module.startswith(__package__ + "."):
        return None
    if module == "anomaly_edu" or module.startswith("anomaly_edu."):
        return f"{module}.{frame.f_code.co_name}"
    return None


def call_refusing_the_package(task: str, fn, *args, allowed: tuple[str, ...] = ()):
    """Call the student's function as :func:`call_student` does, watching every call it
    makes while it runs (``sys.setprofile``, so aliases, helpers and imports
    inside the function are seen too). A call into the anomaly_edu package,
    other than the functions named in ``allowed``, fails the check: the task is
    to write the thing, not to call the package's version of it. Exercises 1-4."""
    reached = set()

    def called_from_the_package(frame) -> bool:
        frame = frame.f_back
        while frame is not None:
            if package_function(frame):
                return True
            frame = frame.f_back
        return False

    def watch(frame, event, arg):
        if event != "call":
            return
        name = package_function(frame)
        # Only the outermost package function: the one the student's code called.
        if name and name.rsplit(".", 1)[1] not in allowed and not called_from_the_package(frame):
            reached.add(name)

    result = call_watched(task, watch, fn, *args)
    if reached:
        raise AssertionError(
            f"{task}: your function calls {', '.join(sorted(reached))} from the anomaly_edu package; write it "
            f"yourself: the package's version is what you are re-creating (plain torch and numpy are fine)"
        )
    return result


REWRITE = "write it yourself; the package's version is what you are re-creating"


def from_package(value) -> bool:
    """Whether ``value`` is the ``anomaly_edu`` package, one of its modules, or
    something defined in one of them."""

    if isinstance(value, types.ModuleType):
        name = value.__name__
    else:
        try:
            name = getattr(value, "__module__", "")
        except Exception:  # an object whose attributes cannot be read refers to nothing
            return False
    return isinstance(name, str) and (name == "anomaly_edu" or name.startswith("anomaly_edu."))


def package_names(fn, seen: set | None = None) -> list[str]:
    """The names through which ``fn`` reaches the ``anomaly_edu`` package: the
    globals and closure variables its code loads (in nested functions and
    lambdas too), its default arguments, the modules it imports, and the same
    for every function of the notebook it calls. torch, numpy and the rest of
    Python are not looked into."""

    seen = set() if seen is None else seen
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    if from_package(fn):
        return [getattr(fn, "__qualname__", None) or repr(fn)]
    wrapped = getattr(fn, "func", None)  # functools.partial
    if wrapped is not None:
        return package_names(wrapped, seen) + [
            repr(v) for v in (*getattr(fn, "args", ()), *getattr(fn, "keywords", {}).values()) if from_package(v)
        ]
    fn = getattr(fn, "__func__", fn)  # a bound method
    if not isinstance(fn, types.FunctionType):
        return []
    found: list[str] = []
    namespace = fn.__globals__
    closure = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:  # a variable not assigned yet
            pass

    def look_at(name: str, value) -> None:
        if from_package(value):
            found.append(name)
        elif isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            found.extend(package_names(value, seen))  # a helper written in the same notebook

    for value in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
        look_at("a default argument", value)
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and name in namespace:
                look_at(name, namespace[name])
            elif instruction.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF") and name in closure:
                look_at(name, closure[name])
            elif instruction.opname == "IMPORT_NAME" and (name == "anomaly_edu" or name.startswith("anomaly_edu.")):
                found.append(name)
    return found


def refuse_the_package(task: str, fn) -> None:
    """Fail when the student's function calls the package instead of re-creating it."""
    names = sorted(set(package_names(fn)))
    if names:
        raise AssertionError(
            f"{task}: your function uses {', '.join(names)} from the anomaly_edu package; {REWRITE} "
            f"(plain torch and numpy are fine)"
        )


def call_watched(task: str, watch, fn, *args):
    """Call the student's function as :func:`call_student` does, with ``watch`` as the
    profiler (``sys.setprofile``) while it runs; the previous one is put back."""

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        return call_student(task, fn, *args)
    finally:
        sys.setprofile(previous)
