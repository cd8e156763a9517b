"""Generated protobuf code for engram/similarity/v1/similarity.proto.

Committed rather than generated at install time; clients/python/check_stubs.py
regenerates it with the pinned grpcio-tools and fails on any difference (ctest
test python_client_stubs). Do not edit the generated files by hand.
"""
