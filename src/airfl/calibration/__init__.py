"""calibration: measurement procedures over radio + modem that write profiles and SigMF captures.

Each procedure will be a module here, runnable as `airfl calibrate NAME --radio URI`; fl/ reads the
profiles they write (files), never this code. See the calibration issue for the procedures planned.
"""
