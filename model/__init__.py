"""clicksam.model"""
