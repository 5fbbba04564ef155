"""dsp: numeric kernels shared by radio/ (the emulated air) and modem/ (the transmitters' corrections).

Imports nothing else of airfl, so either layer may use it without the two meeting.
"""
