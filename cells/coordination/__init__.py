"""A worker's side of the NATS coordination: publishing a media stream's call events in order.

The shared wire contract (subjects, envelope, slots, call state) is in `cells.contract`.
"""
