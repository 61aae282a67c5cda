"""clicksam.export"""
