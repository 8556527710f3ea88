"""switchboard.routing"""
