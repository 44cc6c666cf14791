"""Tools agents call (calendar, transfer, ...) behind one ToolAdapter interface, and their registry."""

from cells.tools.base import FunctionTool, ToolAdapter, ToolError, ToolRegistry, TransferToHuman

__all__ = ["FunctionTool", "ToolAdapter", "ToolError", "ToolRegistry", "TransferToHuman"]
