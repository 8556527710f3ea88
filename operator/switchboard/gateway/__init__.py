"""switchboard.gateway"""
