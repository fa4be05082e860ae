"""Which gradebook a course's commands use: the one its nbgrader_config.py names, as nbgrader finds it."""
from autograder.grader import course


def write(c, text):
    c.mkdir(exist_ok=True)
    (c / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n" + text)
    return c


def test_a_course_without_db_url_uses_its_own_gradebook_and_its_configuration_is_not_run(tmp_path):
    assert course.gradebook_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'gradebook.db'}"
    c = write(tmp_path / "c", "raise SystemExit('run')\nc.CourseDirectory.course_id = 'x'\n")
    assert course.gradebook_url(c) == f"sqlite:///{c.resolve() / 'gradebook.db'}"
    assert course.gradebook_file(c) == c.resolve() / "gradebook.db" and not course.has_gradebook(c)


def test_the_configured_gradebook_wherever_it_is(tmp_path):
    elsewhere = tmp_path / "hub" / "gb.sqlite"
    c = write(tmp_path / "abs", f"c.CourseDirectory.db_url = {'sqlite:///' + str(elsewhere)!r}\n")
    assert course.gradebook_url(c) == f"sqlite:///{elsewhere}" and course.gradebook_file(c) == elsewhere
    assert not course.has_gradebook(c)
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"")
    assert course.has_gradebook(c)
    # a relative SQLite path is the course folder's, where nbgrader runs
    c = write(tmp_path / "rel", "c.CourseDirectory.db_url = 'sqlite:///books/gb.db'\n")
    assert course.gradebook_file(c) == c.resolve() / "books" / "gb.db"
    # a database server: taken as it is, and taken to exist
    c = write(tmp_path / "pg", "c.CourseDirectory.db_url = 'postgresql://grader@db.invalid/course'\n")
    assert course.gradebook_url(c) == "postgresql://grader@db.invalid/course"
    assert course.gradebook_file(c) is None and course.has_gradebook(c)


def test_a_changed_configuration_is_read_again(tmp_path):
    c = write(tmp_path / "c", "c.CourseDirectory.db_url = 'sqlite:///one.db'\n")
    assert course.gradebook_file(c).name == "one.db"
    write(c, "c.CourseDirectory.db_url = 'sqlite:///two.db'\n")
    assert course.gradebook_file(c).name == "two.db"
    write(c, "# db_url left as nbgrader's default\n")
    assert course.gradebook_file(c).name == "gradebook.db"
