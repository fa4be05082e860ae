"""Backprop Ninja: data, model and grading for the course's exercises."""
