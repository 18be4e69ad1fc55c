from __future__ import annotations

from examples.process_time import app
from starlette_mw import describe

stack = describe(app)
print(stack.layers[1:3])  # ('add_server_header', 'add_process_time_header')
print(stack)  # what `python -m starlette_mw stack examples.process_time:app` prints
