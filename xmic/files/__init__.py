"""The ground floor every stage writes and reads its own folders through: atomic writes that
never follow a planted link (``atomic``), the name check for anything that becomes a path
component and JSON reading (``names``), and whether a process that claimed work still lives
(``liveness``). Imports the shared config only.
"""
