"""The sliding-window inference engine shared by super-resolution and fields, and its journal."""
