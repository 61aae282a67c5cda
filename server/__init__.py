"""clicksam.server"""
