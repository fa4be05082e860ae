"""nbgrader's configuration in the learner's JupyterLab (`make lab`): nbgrader's defaults.

Its Validate button runs the notebook in a fresh kernel and reports whether it runs through;
it needs nothing configured. This file is here so that nbgrader finds one and does not warn
"No nbgrader_config.py file found" in the server's log. The instructor's configuration is the
one at the root of the repository.
"""
c = get_config()  # noqa: F821 (provided by nbgrader)

# Validate's kernel talks to nbgrader over Unix sockets: no "running over TCP without
# encryption" warning in the server's log.
c.KernelManager.transport = "ipc"
