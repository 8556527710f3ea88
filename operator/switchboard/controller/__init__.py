"""switchboard.controller"""
