"""switchboard.dialects"""
