"""nbgrader's metadata check with its schema checked once: the same verdict and the same error as
jsonschema.validate, for every cell of the release and for broken metadata."""
import copy

import jsonschema
import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator, ValidationError

from autograder.grader import cellschema, course
from autograder.grader.course import ASSIGNMENT


def release_cells():
    folder = course.ROOT / "release" / ASSIGNMENT
    return [c for path in sorted(folder.glob("*.ipynb")) for c in nbformat.read(path, as_version=4).cells
            if "nbgrader" in c.metadata]


def broken(meta):
    """Metadata broken in each way the schema can see."""
    out = []
    for key, value in [("points", "four"), ("grade", "yes"), ("grade_id", 3), ("schema_version", "3"),
                       ("locked", None), ("points", -1)]:
        m = copy.deepcopy(meta)
        m[key] = value
        out.append(m)
    for key in ("grade", "solution", "locked"):
        m = copy.deepcopy(meta)
        del m[key]
        out.append(m)
    return out


def outcome(fn, instance, schema):
    try:
        fn(instance, schema)
    except jsonschema.ValidationError as e:
        return type(e).__name__, e.message, list(e.absolute_path), e.validator
    return None


def test_every_cell_and_every_broken_metadata_gets_jsonschemas_own_verdict():
    schema = MetadataValidator().schema
    cells = release_cells()
    assert len(cells) > 40
    instances = [c.metadata["nbgrader"] for c in cells]
    instances += broken(next(m for m in instances if m.get("grade")))
    verdicts = [outcome(cellschema.validate, m, schema) for m in instances]
    assert verdicts == [outcome(jsonschema.validate, m, schema) for m in instances]
    assert verdicts[:len(cells)] == [None] * len(cells) and None not in verdicts[len(cells):]


def test_the_schema_is_checked_once_and_a_bad_schema_still_fails(monkeypatch):
    schema = copy.deepcopy(MetadataValidator().schema)
    cls = jsonschema.validators.validator_for(schema)
    checks = []
    real = cls.check_schema.__func__
    monkeypatch.setattr(cls, "check_schema", classmethod(lambda k, s, *a, **kw: checks.append(1) or real(k, s, *a, **kw)))
    meta = release_cells()[0].metadata["nbgrader"]
    for _ in range(50):
        cellschema.validate(meta, schema)
    assert len(checks) == 1
    with pytest.raises(jsonschema.SchemaError):
        cellschema.validate(meta, {"type": 12})


def test_nbgraders_validator_uses_it_and_still_refuses_what_it_refuses():
    cellschema.install()
    cellschema.install()  # twice: one proxy
    from nbgrader.nbgraderformat import common
    assert isinstance(common.jsonschema, cellschema._Jsonschema) and common.jsonschema.Draft4Validator
    nb = nbformat.read(course.ROOT / "release" / ASSIGNMENT / "ex2_cross_entropy.ipynb", as_version=4)
    MetadataValidator().validate_nb(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    cell.metadata.nbgrader["points"] = "four"
    with pytest.raises(ValidationError, match="'four' is not of type 'number'"):
        MetadataValidator().validate_nb(nb)
