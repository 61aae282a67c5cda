"""clicksam.train"""
