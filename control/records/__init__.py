"""Agents' tool records (cells.contract.records): stored for the region's workers, read through the API."""
