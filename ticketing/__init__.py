"""Shared plumbing for the ticketing platform: settings and the command-line tool."""
