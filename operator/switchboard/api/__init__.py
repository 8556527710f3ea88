"""switchboard.api"""
