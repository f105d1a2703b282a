package com.acme;

import com.acme.model.Customer;

public class App {
    public static void main(String[] args) {
        Customer c = new Customer("Ada");
        System.out.println(c.getName());
    }
}
