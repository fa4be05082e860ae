"""A verdict's words with the code of the mistake they name."""


class Reason(str):
    """A verdict's words with the code of the mistake they name (one of diagnose.MISCONCEPTIONS',
    '' where none is named): the code is set where the words are written, never read back
    from them."""

    def __new__(cls, text, code=""):
        self = super().__new__(cls, text)
        self.code = code
        return self
