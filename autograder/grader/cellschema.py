"""nbgrader's check of each cell's nbgrader metadata, without checking nbgrader's own schema again
each time.

nbgrader validates the metadata of every cell it reads with `jsonschema.validate(metadata,
schema)`, several times per notebook (autograde reads each notebook more than once). That call
first checks `schema`, nbgrader's own file, against JSON Schema's metaschema, and that check
costs far more than the validation itself: about 0.5 s of CPU per learner of the course. Here
the schema is checked once per schema object, and each cell is then validated exactly as
`jsonschema.validate` does it (the same validator class, the same best-matching error raised).

nbgrader_config.py calls install(); every nbgrader command loads the configuration. A schema that
is not valid still raises jsonschema's SchemaError, on its first use. This module imports
nbgrader and jsonschema only.
"""
import jsonschema
from nbgrader.nbgraderformat import common

# id(schema) -> (schema, its validator): the schema is kept, so its id is never reused meanwhile
_VALIDATORS = {}


def validate(instance, schema):
    """jsonschema.validate(instance, schema), the schema checked on its first use only."""
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        entry = _VALIDATORS[id(schema)] = (schema, cls(schema))
    error = jsonschema.exceptions.best_match(entry[1].iter_errors(instance))
    if error is not None:
        raise error


class _Jsonschema:
    """What nbgrader.nbgraderformat.common reaches as `jsonschema`: the module, but validate()."""
    validate = staticmethod(validate)

    def __getattr__(self, name):
        return getattr(jsonschema, name)


def install():
    """Make nbgrader's metadata validators use validate() (called by nbgrader_config.py)."""
    if not isinstance(common.jsonschema, _Jsonschema):
        common.jsonschema = _Jsonschema()
